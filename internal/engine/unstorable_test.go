package engine

import (
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"testing"

	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/wire"
)

// The text storeUnstorable makes up is ASCII whatever the delivery holds,
// so that a storage that cannot hold some characters (a MySQL session in
// utf8mb3 refuses 4-byte ones) still stores the Failed row; the quoted
// headers unquote to the original.
func TestUnstorableTextASCII(t *testing.T) {
	h := map[string]string{
		"x-note":   "party 🎉",
		"名前 🎉":     "日本\n\"quoted\"\t\\",
		"x-plain":  "acme",
		"x-binary": "\xff\x00",
	}
	quoted := quoteHeaders(h)
	if i := strings.IndexFunc(quoted, func(r rune) bool { return r > 0x7E || r < 0x20 && r != '\n' }); i >= 0 {
		t.Fatalf("quoted headers not printable ASCII at %d: %q", i, quoted)
	}
	lines := strings.Split(strings.TrimSuffix(quoted, "\n"), "\n")
	if len(lines) != len(h) {
		t.Fatalf("%d lines for %d headers: %q", len(lines), len(h), quoted)
	}
	var prev string
	for _, line := range lines {
		qk, qv, ok := strings.Cut(line, ": ")
		if !ok {
			t.Fatalf("line %q is not key: value", line)
		}
		k, err1 := strconv.Unquote(qk)
		v, err2 := strconv.Unquote(qv)
		if err1 != nil || err2 != nil {
			t.Fatalf("line %q does not unquote: %v %v", line, err1, err2)
		}
		want, ok := h[k]
		if !ok || v != want || k < prev {
			t.Errorf("line %q: header %q = %q, want %q in key order", line, k, v, want)
		}
		prev = k
	}
	if !strings.Contains(quoted, `"x-note": "party \U0001f389"`) {
		t.Errorf("quoted headers %q: no x-note in ASCII", quoted)
	}

	cause := errors.New("value \"🎉 日本\" refused")
	err := error(asciiError{cause})
	if got := err.Error(); got != `value \"\U0001f389 \u65e5\u672c\" refused` || !errors.Is(err, cause) {
		t.Errorf("asciiError: %q (wraps the cause: %v)", got, errors.Is(err, cause))
	}
}

// A delivery whose publisher sent no cap-msg-id gets a new id each time
// it is delivered; the count of its deliveries that could not be stored
// (bounded by maxTransientStores) is kept by its content then, so that
// the bound applies to it too.
func TestUnstoredCountsDeliveriesWithoutID(t *testing.T) {
	gen, err := ids.NewGenerator(1)
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{e: &Engine{ids: gen, log: slog.New(slog.DiscardHandler)}}
	delivery := func(body string) transport.Delivery {
		return transport.Delivery{Topic: "orders.paid", Message: transport.Message{Headers: map[string]string{"x-tenant": "acme"}, Body: []byte(body)}}
	}
	var u unstoredCounts
	for i := 1; i <= 3; i++ {
		m := r.receivedMessage("g", delivery(`{"id":1}`))
		if n := u.add(m); n != i {
			t.Fatalf("delivery %d of a message without cap-msg-id (id %s) counted %d", i, m.MsgID, n)
		}
	}
	if n := u.add(r.receivedMessage("g", delivery(`{"id":2}`))); n != 1 {
		t.Errorf("another message without cap-msg-id counted %d, want 1", n)
	}
	if n := u.add(r.receivedMessage("other", delivery(`{"id":1}`))); n != 1 {
		t.Errorf("the message in another group counted %d, want 1", n)
	}
	with := delivery(`{"id":1}`)
	with.Headers = map[string]string{wire.MsgID: "m-1"}
	for i := 1; i <= 2; i++ {
		if n := u.add(r.receivedMessage("g", with)); n != i {
			t.Errorf("delivery %d of message m-1 counted %d", i, n)
		}
	}
}
