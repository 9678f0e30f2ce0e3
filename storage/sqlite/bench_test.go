package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/gocap/gocap/storage/sqlite"
	"github.com/gocap/gocap/storage/storagetest"
)

// InsertReceivedBatch of 100 messages against 100 InsertReceived calls
// (msgs/s), on a database file in a temporary directory:
//
//	go test -run '^$' -bench ReceivedBatch -count 3 ./storage/sqlite/
func BenchmarkReceivedBatch(b *testing.B) {
	db, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "gocap.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	d := sqlite.New(db, sqlite.Options{})
	if err := d.Migrate(context.Background()); err != nil {
		b.Fatal(err)
	}
	storagetest.BenchReceivedBatch(b, d, 100)
}
