package mysql_test

import (
	"context"
	"encoding/json"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/storagetest"
)

// The cost InsertPublishedTx adds to an application's transaction, against
// a plain INSERT of the same row into the same table. Each iteration is one
// transaction: begin, insert, commit. Run both together and compare:
//
//	go test -run '^$' -bench 'InsertPublishedTx|PlainInsertTx' -benchtime 3000x -count 3 ./storage/mysql/
//
// The "interpolate" variants use interpolateParams=true, which saves the
// prepare and close round trips database/sql makes for each statement with
// arguments.
func BenchmarkInsertPublishedTx(b *testing.B) {
	for _, v := range benchDSNs {
		b.Run(v.name, func(b *testing.B) {
			d, db, _ := driverWithParams(b, v.params)
			ctx := context.Background()
			b.ResetTimer()
			for b.Loop() {
				m := benchMessage()
				tx, err := db.BeginTx(ctx, nil)
				if err != nil {
					b.Fatal(err)
				}
				if err := d.InsertPublishedTx(ctx, tx, []*storage.Message{m}, storage.InsertOptions{}); err != nil {
					b.Fatal(err)
				}
				if err := tx.Commit(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkPlainInsertTx(b *testing.B) {
	for _, v := range benchDSNs {
		b.Run(v.name, func(b *testing.B) {
			_, db, prefix := driverWithParams(b, v.params)
			ctx := context.Background()
			query := "INSERT INTO `" + prefix + "published` (id, name, headers, body, status, retries, last_error, added, next_attempt_at)" +
				" VALUES (?, ?, ?, ?, 'Scheduled', 0, '', ?, ?)"
			b.ResetTimer()
			for b.Loop() {
				// The same work a hand-rolled outbox does: headers as JSON, UTC times.
				m := benchMessage()
				h, _ := json.Marshal(m.Headers)
				at := m.Added.Format("2006-01-02 15:04:05.000000")
				tx, err := db.BeginTx(ctx, nil)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := tx.ExecContext(ctx, query, m.ID, m.Name, string(h), m.Body, at, at); err != nil {
					b.Fatal(err)
				}
				if err := tx.Commit(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

var benchDSNs = []struct{ name, params string }{
	{"default", ""},
	{"interpolate", "interpolateParams=true"},
}

func benchMessage() *storage.Message {
	id := gen.Next()
	sid := strconv.FormatInt(id, 10)
	now := time.Now().UTC()
	return &storage.Message{
		ID: id, Kind: storage.Published, MsgID: sid, Name: "order.paid",
		Headers: map[string]string{"cap-msg-id": sid, "cap-msg-name": "order.paid", "cap-senttime": now.Format(time.RFC3339Nano)},
		Body:    []byte(`{"id":7,"amount":"9.90"}`), Added: now, NextAttemptAt: now,
	}
}

// InsertReceivedBatch of 100 messages against 100 InsertReceived calls
// (msgs/s), with and without interpolateParams:
//
//	go test -run '^$' -bench ReceivedBatch -count 3 ./storage/mysql/
func BenchmarkReceivedBatch(b *testing.B) {
	for _, v := range benchDSNs {
		b.Run(v.name, func(b *testing.B) {
			d, _, _ := driverWithParams(b, v.params)
			storagetest.BenchReceivedBatch(b, d, 100)
		})
	}
}

// The failed attempts of 100 leased rows recorded with one FailBatch
// against 100 Fail calls (fails/s; ns/op per 100 failures), with and
// without interpolateParams:
//
//	go test -run '^$' -bench FailBatch -count 5 ./storage/mysql/
func BenchmarkFailBatch(b *testing.B) {
	for _, v := range benchDSNs {
		b.Run(v.name, func(b *testing.B) {
			d, _, _ := driverWithParams(b, v.params)
			storagetest.BenchFailBatch(b, d, 100)
		})
	}
}

// The processor's cycle on MariaDB/MySQL, per row: a Claim of 100 due
// rows (GOCAP_BENCH_CLAIM rows if set), then one Succeed of them (the
// completer's batch; each 100 rows share an attempt, as the rows of a
// batch send do), on a table of 20,000 rows published beforehand;
// ns/claimed and ns/succeeded are the two statements' time per row:
//
//	go test -run '^$' -bench ClaimSucceed -benchtime 200x -count 3 ./storage/mysql/
func BenchmarkClaimSucceed(b *testing.B) {
	d, _, _ := driverWithParams(b, "")
	ctx := context.Background()
	batch := benchClaimBatch
	rows := max(20_000, b.N*batch)
	for i := 0; i < rows; i += 1000 {
		ms := make([]*storage.Message, 1000)
		for j := range ms {
			ms[j] = benchMessage()
			ms[j].Added = ms[j].Added.Add(-time.Minute)
			ms[j].NextAttemptAt = ms[j].Added
		}
		if err := d.InsertPublished(ctx, ms, storage.InsertOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	var claimed, succeeded time.Duration
	b.ResetTimer()
	for i := range b.N {
		now := time.Now().UTC()
		start := time.Now()
		ms, err := d.Claim(ctx, storage.Published, storage.ClaimRequest{Now: now, LeaseUntil: now.Add(time.Minute), Token: int64(i + 1), Limit: batch})
		if err != nil || len(ms) != batch {
			b.Fatalf("claimed %d rows: %v", len(ms), err)
		}
		claimed += time.Since(start)
		done := make([]storage.Completed, len(ms))
		for j, m := range ms {
			done[j] = storage.Completed{Lease: storage.Lease{ID: m.ID, Token: m.LeaseToken}, Attempt: storage.Attempt{At: now, Duration: time.Duration(1+j/100) * time.Millisecond}}
		}
		start = time.Now()
		if n, err := d.Succeed(ctx, storage.Published, done, now.Add(time.Hour)); err != nil || n != int64(batch) {
			b.Fatalf("succeeded %d rows: %v", n, err)
		}
		succeeded += time.Since(start)
	}
	b.ReportMetric(float64(claimed.Nanoseconds())/float64(b.N*batch), "ns/claimed")
	b.ReportMetric(float64(succeeded.Nanoseconds())/float64(b.N*batch), "ns/succeeded")
}

// benchClaimBatch is the claim of BenchmarkClaimSucceed: 100 rows, or
// GOCAP_BENCH_CLAIM.
var benchClaimBatch = func() int {
	if n, err := strconv.Atoi(os.Getenv("GOCAP_BENCH_CLAIM")); err == nil && n > 0 {
		return n
	}
	return 100
}()
