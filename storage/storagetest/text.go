// The Text area: text a database cannot hold as it is (the rules of the
// storage package's Text section).

package storagetest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/storage"
)

func (s *suite[TTx]) receivedLongMsgID(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	long := incompressible(10_000)
	r := s.received(long, "billing", "long.id", []byte(`{}`))
	res, err := d.InsertReceived(bg, r, ids.Token(), t0.Add(time.Minute))
	if err != nil || !res.Claimed || res.ID != r.ID {
		t.Fatalf("InsertReceived of a 10,000-character id: %+v err %v", res, err)
	}
	got := get(t, d, storage.Received, res.ID)
	if !utf8.ValidString(got.MsgID) || len(got.MsgID) > storage.MaxMsgIDBytes || got.MsgID != storage.StorableMsgID(long) {
		t.Errorf("stored id %q, want StorableMsgID of the long id, %q", got.MsgID, storage.StorableMsgID(long))
	}
	if got.Status != storage.StatusScheduled || got.LeaseToken == 0 || got.Headers["cap-msg-id"] != long {
		t.Errorf("stored row: status %s token %d, cap-msg-id header of %d bytes", got.Status, got.LeaseToken, len(got.Headers["cap-msg-id"]))
	}
	dup := s.received(long, "billing", "long.id", []byte(`{}`))
	if res, err := d.InsertReceived(bg, dup, ids.Token(), t0.Add(time.Minute)); err != nil || res.Claimed {
		t.Errorf("the same long id again: %+v err %v; want a duplicate", res, err)
	}
	// Two ids that share their first 200 characters are two messages.
	other := s.received(long[:len(long)-1]+"x", "billing", "long.id", []byte(`{}`))
	if res, err := d.InsertReceived(bg, other, ids.Token(), t0.Add(time.Minute)); err != nil || !res.Claimed || res.ID != other.ID {
		t.Errorf("another long id with the same prefix: %+v (want id %d) err %v", res, other.ID, err)
	}
	if counts, err := d.Counts(bg, storage.Received); err != nil || counts[storage.StatusScheduled] != 2 {
		t.Errorf("received rows: %v %v, want 2 Scheduled", counts, err)
	}
}

// fourByteText: text with characters outside the Basic Multilingual Plane
// (4 bytes in UTF-8, emoji say), which a MySQL session in utf8mb3 refuses,
// is stored and read back as it is: names, headers, message ids and
// groups, published (in and out of a transaction) and received.
func (s *suite[TTx]) fourByteText(t *testing.T) {
	d := s.h.New(t)
	const emoji = "party 🎉 𝄞"
	pub, pubTx := s.msg("orders.🎉", now()), s.msg("orders.🎉", now())
	for _, m := range []*storage.Message{pub, pubTx} {
		m.Headers["note 🎉"] = emoji
	}
	s.insert(t, d, pub)
	tx, commit, rollback := s.h.Begin(bg, t, d)
	if err := d.InsertPublishedTx(bg, tx, []*storage.Message{pubTx}, storage.InsertOptions{}); err != nil {
		rollback()
		t.Fatalf("InsertPublishedTx with 4-byte characters: %v", err)
	}
	if err := commit(); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*storage.Message{pub, pubTx} {
		if got := get(t, d, storage.Published, m.ID); got.Name != m.Name || got.Headers["note 🎉"] != emoji {
			t.Errorf("published row: name %q, headers %q; want %q with %q", got.Name, got.Headers, m.Name, emoji)
		}
	}
	r := s.received("id-🎉", "group-🎉", "orders.🎉", []byte(emoji))
	r.Headers["note 🎉"] = emoji
	if res, err := d.InsertReceived(bg, r, ids.Token(), now().Add(time.Minute)); err != nil || !res.Claimed {
		t.Fatalf("InsertReceived with 4-byte characters: %+v %v", res, err)
	}
	got := get(t, d, storage.Received, r.ID)
	if got.MsgID != r.MsgID || got.Group != r.Group || got.Name != r.Name || got.Headers["note 🎉"] != emoji || string(got.Body) != emoji {
		t.Errorf("received row: id %q, group %q, name %q, headers %q, body %q; want %q, %q, %q, %q with %q, %q",
			got.MsgID, got.Group, got.Name, got.Headers, got.Body, r.MsgID, r.Group, r.Name, "note 🎉", emoji, emoji)
	}
	if res, err := d.InsertReceived(bg, s.received(r.MsgID, r.Group, r.Name, nil), ids.Token(), now().Add(time.Minute)); err != nil || res.Claimed {
		t.Errorf("the same 4-byte id again: %+v %v; want a duplicate", res, err)
	}
}

func (s *suite[TTx]) invalidText(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	bad := func(m *storage.Message) {
		m.Name = "name.\xff\x00." + m.Name
		m.Headers["key\x00\xff"] = "value\x00\xfe"
		m.Headers["nul"] = "a\x00b"
	}
	pub, pubTx := s.msg("pub", t0), s.msg("pubtx", t0)
	bad(pub)
	bad(pubTx)
	if err := d.InsertPublished(bg, []*storage.Message{pub}, storage.InsertOptions{}); err != nil {
		t.Fatalf("InsertPublished with NUL and invalid UTF-8: %v", err)
	}
	tx, commit, rollback := s.h.Begin(bg, t, d)
	if err := d.InsertPublishedTx(bg, tx, []*storage.Message{pubTx}, storage.InsertOptions{}); err != nil {
		rollback()
		t.Fatalf("InsertPublishedTx with NUL and invalid UTF-8: %v", err)
	}
	if err := commit(); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*storage.Message{pub, pubTx} {
		got := get(t, d, storage.Published, m.ID)
		visible(t, "published name", got.Name, `\xff`, `\x00`)
		visibleHeaders(t, "published", got.Headers, []string{`\x00`, `\xff`}, []string{`\x00`, `\xfe`})
		if got.Headers["nul"] != `a\x00b` {
			t.Errorf("published header nul = %q, want %q", got.Headers["nul"], `a\x00b`)
		}
	}

	const group = "group.\xff"
	r := s.received("id.\xff\x00", group, "rec", []byte(`{}`))
	bad(r)
	res, err := d.InsertReceived(bg, r, ids.Token(), t0.Add(-time.Second)) // lease already over
	if err != nil || !res.Claimed {
		t.Fatalf("InsertReceived with NUL and invalid UTF-8: %+v err %v", res, err)
	}
	id := res.ID
	got := get(t, d, storage.Received, id)
	if !utf8.ValidString(got.MsgID) || got.MsgID != storage.StorableMsgID(r.MsgID) {
		t.Errorf("received id %q, want %q", got.MsgID, storage.StorableMsgID(r.MsgID))
	}
	visible(t, "received name", got.Name, `\xff`, `\x00`)
	visible(t, "received group", got.Group, `\xff`)
	visibleHeaders(t, "received", got.Headers, []string{`\x00`, `\xff`}, []string{`\x00`, `\xfe`})
	if res, err := d.InsertReceived(bg, s.received(r.MsgID, group, "rec", nil), ids.Token(), t0.Add(time.Minute)); err != nil || res.Claimed {
		t.Errorf("the same invalid id again: %+v err %v; want a duplicate", res, err)
	}
	// The processor claims by the group names it was given.
	at := now().Add(time.Minute)
	c, err := d.Claim(bg, storage.Received, storage.ClaimRequest{Now: at, LeaseUntil: at.Add(time.Minute), Token: ids.Token(), Limit: 10, Groups: []string{group}})
	if err != nil || len(c) != 1 || c[0].ID != id {
		t.Errorf("claim by the invalid group: %v %v, want row %d", idsOf(c), err, id)
	}

	inst := storage.Instance{ID: "host\xff/1/1", Hostname: "host\x00\xff", PID: 1, Started: t0, LastSeen: t0}
	if err := d.Heartbeat(bg, inst); err != nil {
		t.Fatalf("Heartbeat with NUL and invalid UTF-8: %v", err)
	}
	insts, err := d.Instances(bg, t0.Add(-time.Minute))
	if err != nil || len(insts) != 1 {
		t.Fatalf("Instances: %+v %v", insts, err)
	}
	visible(t, "instance id", insts[0].ID, `\xff`)
	visible(t, "instance hostname", insts[0].Hostname, `\x00`, `\xff`)
	if err := d.RemoveInstance(bg, inst.ID, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if insts, _ := d.Instances(bg, time.Time{}); len(insts) != 0 {
		t.Errorf("RemoveInstance by the id given to Heartbeat left %d instances", len(insts))
	}
}

func (s *suite[TTx]) failLongErrorText(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	m := s.msg("fail.long", t0.Add(-time.Second))
	s.insert(t, d, m)
	long := strings.Repeat("日本", 100_000/6) // 100 KB of 3-byte characters
	at := t0
	const maxAttempts = 3
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		c := claim(t, d, storage.Published, at, time.Minute, 1)
		if len(c) != 1 {
			t.Fatalf("attempt %d: claimed %d rows", attempt, len(c))
		}
		prefix := fmt.Sprintf("attempt %d: ", attempt)
		next := at.Add(10 * time.Second)
		text := prefix + "\x00\xff " + long
		res, err := d.Fail(bg, storage.Published, lease(c[0]), storage.Failure{
			Error: text, Now: at, NextAttemptAt: next, MaxAttempts: maxAttempts, ExpiresAt: at.Add(time.Hour),
			Attempt: storage.Attempt{At: at, Duration: time.Second, Error: text},
		})
		if err != nil {
			t.Fatalf("attempt %d: Fail with a 100 KB error text: %v", attempt, err)
		}
		if res.Retries != attempt {
			t.Errorf("attempt %d: retries %d", attempt, res.Retries)
		}
		r := get(t, d, storage.Published, m.ID)
		if !strings.HasPrefix(r.LastError, prefix) {
			t.Errorf("attempt %d: LastError starts %.40q", attempt, r.LastError)
		}
		visible(t, "LastError", r.LastError, `\x00`, `\xff`, "日本")
		// The attempt keeps the start of the text, cut on a character
		// boundary to storage.MaxAttemptErrorBytes.
		if len(r.Attempts) != attempt {
			t.Fatalf("attempt %d: %d attempts recorded", attempt, len(r.Attempts))
		}
		e := r.Attempts[attempt-1].Error
		if len(e) > storage.MaxAttemptErrorBytes || !strings.HasPrefix(e, prefix) {
			t.Errorf("attempt %d: recorded error of %d bytes starting %.40q; want at most %d starting %q",
				attempt, len(e), e, storage.MaxAttemptErrorBytes, prefix)
		}
		visible(t, "attempt error", e, `\x00`, `\xff`, "日本")
		at = next
	}
	r := get(t, d, storage.Published, m.ID)
	if r.Status != storage.StatusFailed || r.Retries != maxAttempts {
		t.Errorf("after %d failures: status %s retries %d, want Failed after %d", maxAttempts, r.Status, r.Retries, maxAttempts)
	}
}

// incompressible returns n characters of hex that a database cannot
// compress below an index's size limit, as it can a repeated text.
func incompressible(n int) string {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		sum := sha256.Sum256([]byte(strconv.Itoa(i)))
		b.WriteString(hex.EncodeToString(sum[:]))
	}
	return b.String()[:n]
}

// visible checks that a text read back is valid UTF-8 and shows each of
// the escapes that storage.ValidText makes of bytes a database refuses.
func visible(t *testing.T, what, got string, escapes ...string) {
	t.Helper()
	if !utf8.ValidString(got) {
		t.Errorf("%s read back is not valid UTF-8: %q", what, got)
	}
	for _, e := range escapes {
		if !strings.Contains(got, e) {
			t.Errorf("%s read back as %q: does not show %s", what, got, e)
		}
	}
}

// visibleHeaders checks that headers read back hold the key and value
// escapes, in one entry.
func visibleHeaders(t *testing.T, what string, h map[string]string, keyEscapes, valueEscapes []string) {
	t.Helper()
	for k, v := range h {
		visible(t, what+" header key", k)
		visible(t, what+" header value", v)
	}
	for k, v := range h {
		if containsAll(k, keyEscapes) && containsAll(v, valueEscapes) {
			return
		}
	}
	t.Errorf("%s headers read back as %q: no key showing %v with a value showing %v", what, h, keyEscapes, valueEscapes)
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
