package sqlite_test

import (
	"testing"

	"github.com/gocap/gocap/storage/storagetest"
)

// InsertReceivedBatch of 100 messages against 100 InsertReceived calls
// (msgs/s), on a database file in a temporary directory:
//
//	go test -run '^$' -bench ReceivedBatch -count 3 ./storage/sqlite/
func BenchmarkReceivedBatch(b *testing.B) {
	d, _ := newDriver(b)
	storagetest.BenchReceivedBatch(b, d, 100)
}
