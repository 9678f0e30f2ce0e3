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

// The failed attempts of 100 leased rows recorded with one FailBatch (one
// transaction) against 100 Fail calls (a transaction each; fails/s, ns/op
// per 100 failures), on a database file in a temporary directory:
//
//	go test -run '^$' -bench FailBatch -count 5 ./storage/sqlite/
func BenchmarkFailBatch(b *testing.B) {
	d, _ := newDriver(b)
	storagetest.BenchFailBatch(b, d, 100)
}
