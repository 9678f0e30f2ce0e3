package mysql_test

import (
	"context"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/storage"
)

// Text longer than its VARCHAR column (name 255, grp 200, instance id and
// hostname 255 characters) is cut to the column on a character boundary,
// and found again by the value the application gave.
func TestLongTextFitsColumns(t *testing.T) {
	ctx := context.Background()
	d, _ := newDriver(t)
	long := strings.Repeat("🚀", 300) // 4 bytes each: 300 characters, 1,200 bytes
	at := time.Now().UTC().Truncate(time.Microsecond)
	p := pubMsg(long, at)
	if err := d.InsertPublished(ctx, []*storage.Message{p}, storage.InsertOptions{}); err != nil {
		t.Fatalf("InsertPublished with a 300-character name: %v", err)
	}
	got, err := d.Get(ctx, storage.Published, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if n := utf8.RuneCountInString(got.Name); n != 255 || !strings.HasPrefix(long, strings.TrimSuffix(got.Name, "…[truncated]")) {
		t.Errorf("stored name: %d characters %q", n, got.Name)
	}
	if rows, err := d.List(ctx, storage.Filter{Kind: storage.Published, Name: long}); err != nil || len(rows) != 1 {
		t.Errorf("List by the long name: %d rows, %v", len(rows), err)
	}

	r := &storage.Message{ID: gen.Next(), Kind: storage.Received, MsgID: "1", Group: long, Name: long, Added: at}
	if res, err := d.InsertReceived(ctx, r, ids.Token(), at); err != nil || !res.Claimed {
		t.Fatalf("InsertReceived with a 300-character group: %+v %v", res, err)
	}
	c, err := d.Claim(ctx, storage.Received, storage.ClaimRequest{Now: at.Add(time.Second), LeaseUntil: at.Add(time.Minute), Token: ids.Token(), Limit: 10, Groups: []string{long}})
	if err != nil || len(c) != 1 || utf8.RuneCountInString(c[0].Group) != 200 {
		t.Errorf("claim by the long group: %d rows, %v", len(c), err)
	}

	inst := storage.Instance{ID: long, Hostname: long, PID: 1, Started: at, LastSeen: at}
	if err := d.Heartbeat(ctx, inst); err != nil {
		t.Fatalf("Heartbeat with a 300-character id: %v", err)
	}
	if err := d.RemoveInstance(ctx, long, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if insts, err := d.Instances(ctx, time.Time{}); err != nil || len(insts) != 0 {
		t.Errorf("after RemoveInstance by the long id: %d instances, %v", len(insts), err)
	}
}
