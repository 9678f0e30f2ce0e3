package mysql_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/mysql"
)

// A DSN with charset=utf8 (utf8mb3), as in the common
// "charset=utf8&parseTime=True&loc=Local", is refused on first use with an
// error naming the DSN parameter to fix, before anything is stored: a
// session in utf8mb3 refuses every 4-byte character (an emoji in a header),
// which would make a delivery unstorable, even as a Failed row.
func TestCharsetUTF8MB3Refused(t *testing.T) {
	ctx := context.Background()
	_, _, prefix := driverWithParams(t, "") // the tables, migrated on a utf8mb4 session
	good := mysql.New(openWithParams(t, "charset=utf8mb4"), mysql.Options{TablePrefix: prefix})
	db := openWithParams(t, "charset=utf8&parseTime=True&loc=Local")
	check := func(what string, err error) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), "charset=utf8mb4") || !strings.Contains(err.Error(), "utf8mb3") {
			t.Errorf("%s on a utf8mb3 session: %v; want an error naming charset=utf8mb4", what, err)
		}
		if errors.Is(err, storage.ErrPermanent) {
			t.Errorf("%s: %v is ErrPermanent; a delivery must go back to the broker, not be taken as unstorable", what, err)
		}
	}
	check("Migrate", mysql.New(db, mysql.Options{TablePrefix: prefix}).Migrate(ctx))

	d := mysql.New(db, mysql.Options{TablePrefix: prefix})
	at := time.Now().UTC()
	m := pubMsg("orders.created", at)
	m.Headers["note"] = "party 🎉"
	check("InsertPublished", d.InsertPublished(ctx, []*storage.Message{m}, storage.InsertOptions{}))
	check("InsertPublished again", d.InsertPublished(ctx, []*storage.Message{pubMsg("plain", at)}, storage.InsertOptions{}))
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	check("InsertPublishedTx", mysql.New(db, mysql.Options{TablePrefix: prefix}).InsertPublishedTx(ctx, tx, []*storage.Message{pubMsg("tx", at)}, storage.InsertOptions{}))
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	r := &storage.Message{ID: gen.Next(), Kind: storage.Received, MsgID: "m-1", Name: "t", Group: "g",
		Headers: map[string]string{"note": "🎉"}, Status: storage.StatusScheduled, Added: at}
	_, err = d.InsertReceived(ctx, r, ids.Token(), at.Add(time.Minute))
	check("InsertReceived", err)
	_, err = d.InsertReceivedBatch(ctx, []*storage.Message{r}, ids.Token(), at.Add(time.Minute))
	check("InsertReceivedBatch", err)
	_, err = d.Claim(ctx, storage.Published, storage.ClaimRequest{Now: at, LeaseUntil: at.Add(time.Minute), Token: ids.Token(), Limit: 10})
	check("Claim", err)
	for _, kind := range []storage.Kind{storage.Published, storage.Received} {
		counts, err := good.Counts(ctx, kind)
		if err != nil {
			t.Fatal(err)
		}
		for status, n := range counts {
			if n != 0 {
				t.Errorf("%v: %d rows %s stored through the utf8mb3 session", kind, n, status)
			}
		}
	}
}

// With charset=utf8mb4 (and without charset, the conformance suite's DSN),
// 4-byte characters are stored and read back.
func TestCharsetUTF8MB4(t *testing.T) {
	ctx := context.Background()
	_, _, prefix := driverWithParams(t, "")
	d := mysql.New(openWithParams(t, "charset=utf8mb4&parseTime=True&loc=Local"), mysql.Options{TablePrefix: prefix})
	if err := d.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	at := time.Now().UTC()
	m := pubMsg("orders.🎉", at)
	m.Headers["note"] = "party 🎉"
	if err := d.InsertPublished(ctx, []*storage.Message{m}, storage.InsertOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := d.Get(ctx, storage.Published, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != m.Name || got.Headers["note"] != "party 🎉" {
		t.Errorf("stored name %q, header %q; want %q, %q", got.Name, got.Headers["note"], m.Name, "party 🎉")
	}
	r := &storage.Message{ID: gen.Next(), Kind: storage.Received, MsgID: "id-🎉", Name: "t", Group: "g-🎉",
		Headers: map[string]string{"note": "🎉"}, Status: storage.StatusScheduled, Added: at}
	if res, err := d.InsertReceived(ctx, r, ids.Token(), at.Add(time.Minute)); err != nil || !res.Claimed {
		t.Fatalf("InsertReceived: %+v %v", res, err)
	}
	if got, err := d.Get(ctx, storage.Received, r.ID); err != nil || got.MsgID != r.MsgID || got.Group != r.Group || got.Headers["note"] != "🎉" {
		t.Fatalf("received row: %+v %v", got, err)
	}
}
