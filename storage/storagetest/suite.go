// Package storagetest is the conformance suite of gocap's storage contract.
// Every storage in this module runs it against a real database, and a
// third-party storage runs it the same way from a test of its own:
//
//	func TestConformance(t *testing.T) {
//		storagetest.Run(t, storagetest.Harness[*sql.Tx]{
//			New: func(t *testing.T) storage.Driver[*sql.Tx] {
//				// a fresh, migrated, empty driver on tables of its own,
//				// dropped with t.Cleanup
//			},
//			Begin: func(ctx context.Context, t *testing.T, d storage.Driver[*sql.Tx]) (*sql.Tx, func() error, func() error) {
//				tx, err := db.BeginTx(ctx, nil)
//				...
//				return tx, tx.Commit, tx.Rollback
//			},
//			LargeBody: 16 << 20,
//		})
//	}
//
// The suite checks the promises written on storage.Store: transactional
// insert, claims with leases that never hand one row to two claimers,
// retry counting in SQL, expiry and cleaning in bounded batches, exact
// round trips of large and non-ASCII content, received-side de-duplication,
// the dashboard's queries, and the storage package's rules for text: any
// Go string is stored (invalid UTF-8 and NUL made visible, long message ids
// hashed, long error texts cut), Release, and errors marked permanent.
//
// # Areas
//
// [Run] groups the cases by area, one subtest each, so that a backend
// author can work on one part of the contract at a time:
//
//	go test -run 'TestConformance/Claim' ./mybackend/
//	go test -run 'TestConformance/Outcome/Release' ./mybackend/
//
// The areas, each in the file of its name unless named:
//
//   - Insert: InsertPublished and InsertPublishedTx (commit and rollback,
//     InsertOptions, large, binary and non-ASCII content);
//   - Insert also: the Policy of a row, kept through its whole life;
//   - IDTaken (idtaken.go): an insert of an id stored already, published
//     (alone, with another message, in a transaction that stays usable and
//     commits the rest) or received (another message id or group, a
//     Failed row left Failed, a batch), stores nothing and is
//     storage.ErrIDTaken;
//   - Claim: due rows only, oldest first, leases that hide a row until
//     they end, concurrent claimers never sharing a row, argument checks,
//     Delayed rows claimed when due (and made Scheduled), NextDue;
//   - Outcome: Succeed, Fail (retry counting, final and permanent
//     failures, no limit, a limit the row has passed already), Release, DeleteExpired of what they made
//     expire, the attempt history they append (the last 20 kept), and a
//     Succeed of 1,000 rows;
//   - FailBatch (failbatch.go), for a Store that implements
//     storage.FailBatcher (skipped otherwise): rows retried, reaching
//     their MaxAttempts (after an earlier failure too), failing
//     permanently or without a limit, and rows whose lease was lost
//     (taken by another claim, Succeeded), with one outcome per row in
//     order and each row's retries, status, error, due time, expiry,
//     lease and history; rows of other leases untouched; an empty batch;
//     a row named twice refused; error texts stored as Fail stores them;
//     a batch of 1,100 rows;
//   - NextClaim (nextclaim.go), for a Store that implements
//     storage.NextClaimer (skipped otherwise): SucceedClaimNext claims
//     the next row of the keys of the rows it marks Succeeded and nothing
//     else (not rows without a key, other keys' heads, rows not due,
//     beyond the limit, the earliest due first), leased under the
//     request; received keys per group and the request's groups; a row
//     whose lease was lost is not marked and still holds its key; a zero
//     limit refused;
//   - Received: InsertReceived's de-duplication and reset of Failed
//     duplicates, a Succeeded row or one waiting for its retry left
//     alone by a duplicate, claims restricted to consumer groups;
//   - ReceivedBatch (batch.go), for a Store that implements
//     storage.ReceivedBatchInserter (skipped otherwise): InsertReceivedBatch
//     of new messages, of duplicates within a batch, across batches and
//     against InsertReceived, the reset of Failed rows, Succeeded rows
//     and rows waiting for a retry left alone, a mix of all with
//     results in order, a long message id twice, an empty batch, a
//     failing batch storing nothing, and concurrent batches with
//     overlapping ids claiming each row once;
//   - Text: characters of 4 bytes in UTF-8 (emoji) stored as they are;
//     text a database cannot hold as it is (long message ids, invalid
//     UTF-8 and NUL, long error texts);
//   - Dashboard: List's filters (received rows by group too) and
//     paging, Counts, Histogram, Requeue (of a Delayed row too) and
//     Delete; for a Store that implements
//     storage.BoundedCounter (skipped otherwise), BoundedCounts exact and
//     unmarked on small tables with rows of every status, and on empty
//     ones;
//   - Times: every time of a row (Added, NextAttemptAt, ExpiresAt,
//     LeaseUntil, the attempts' At) that Get, Claim and List return is
//     UTC, for rows leased, waiting for a retry, Succeeded and Failed;
//   - Instances: Heartbeat, Instances and RemoveInstance;
//   - Ordering: the claim rule of ordering keys (the head of each key
//     only; a smaller id Scheduled, Delayed, waiting for a retry or in
//     flight holds the key; a Failed one per ClaimRequest.FailedHoldsKey;
//     keys per group; no row of a key while another is in flight, also a
//     smaller id committed after a larger one was claimed), keyed
//     received rows stored claimed as the head of their key and unleased
//     otherwise (one by one and in batches, the head of a batch's key
//     its smallest id whatever the text order of the message ids),
//     claimers racing over many keys, inserters and claimers racing
//     over received keys with rows stored out of id order
//     (ordering_inflight.go), and, for a Store that implements
//     storage.KeyInspector, BlockedKeys; with versions
//     (ordering_version.go), a key's sequence per version: rows of
//     another version never hold the key, and BlockedKeys names the
//     version; with ClaimRequest.Run (ordering_runs.go), a head and the
//     rows that follow it, or the head alone, never past a row that
//     cannot join, the run holding its key, Limit counting heads.
//   - TxRead (txread.go), for a Store that implements storage.TxReader
//     (skipped otherwise): ListPublishedTx sees the transaction's own
//     uncommitted rows with the committed ones, filtered and paged as
//     List, and none of a rolled-back transaction.
//   - Version: version isolation (DotNetCore.CAP's Version): rows keep
//     their version (published, in and out of a transaction; received, one
//     and in batches); claims (by group too) and NextDue of one version
//     never return another's rows, the empty version being one of its
//     own; invalid versions refused; List's filter by version; DeleteExpired
//     of every version.
package storagetest

import (
	"context"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/storage"
)

// Harness tells the suite how to use one storage.
type Harness[TTx any] struct {
	// New returns a fresh, migrated, empty driver on tables no other test
	// uses, and registers their removal with t.Cleanup.
	New func(t *testing.T) storage.Driver[TTx]
	// Begin starts an application transaction on the database of d and
	// returns it with its commit and rollback functions.
	Begin func(ctx context.Context, t *testing.T, d storage.Driver[TTx]) (tx TTx, commit, rollback func() error)
	// LargeBody is the body size of the large-payload test. Zero means 4 MiB.
	LargeBody int
	// Claimers is the number of goroutines of the concurrent-claim test.
	// Zero means 8.
	Claimers int
}

// Run runs the whole suite as subtests of t, one subtest per area, each
// holding that area's cases (see the package documentation).
func Run[TTx any](t *testing.T, h Harness[TTx]) {
	if h.LargeBody == 0 {
		h.LargeBody = 4 << 20
	}
	if h.Claimers == 0 {
		h.Claimers = 8
	}
	s := &suite[TTx]{h: h}
	for _, a := range s.areas() {
		t.Run(a.name, func(t *testing.T) {
			for _, c := range a.cases {
				t.Run(c.name, c.f)
			}
		})
	}
}

// area is a group of cases about one part of the contract.
type area struct {
	name  string
	cases []testCase
}

type testCase struct {
	name string
	f    func(t *testing.T)
}

// areas lists the suite's cases by area; each area's cases are in the
// file of its name.
func (s *suite[TTx]) areas() []area {
	return []area{
		{"Insert", []testCase{
			{"TxCommitAndRollback", s.txCommitAndRollback},
			{"InsertWithoutTx", s.insertWithoutTx},
			{"LargeAndNonASCII", s.largeAndNonASCII},
			{"PolicyRoundTrip", s.policyRoundTrip},
		}},
		{"IDTaken", []testCase{
			{"Published", s.idTakenPublished},
			{"PublishedTx", s.idTakenPublishedTx},
			{"Received", s.idTakenReceived},
			{"ReceivedBatch", s.idTakenReceivedBatch},
		}},
		{"Claim", []testCase{
			{"ClaimDueOnly", s.claimDueOnly},
			{"ClaimDueFrom", s.claimDueFrom},
			{"LeaseHidesAndExpires", s.leaseHidesAndExpires},
			{"ConcurrentClaims", s.concurrentClaims},
			{"Delayed", s.claimDelayed},
			{"NextDue", s.nextDue},
		}},
		{"Outcome", []testCase{
			{"Succeed", s.succeed},
			{"FailRetriesAndFinal", s.failRetriesAndFinal},
			{"FailPermanent", s.failPermanent},
			{"FailPastMaxAttempts", s.failPastMaxAttempts},
			{"Release", s.release},
			{"DeleteExpired", s.deleteExpired},
			{"AttemptHistory", s.attemptHistory},
			{"SucceedBatch", s.succeedBatch},
		}},
		{"FailBatch", []testCase{
			{"Mix", s.failBatchMix},
			{"OtherToken", s.failBatchOtherToken},
			{"Empty", s.failBatchEmpty},
			{"Duplicate", s.failBatchDuplicate},
			{"Text", s.failBatchText},
			{"Large", s.failBatchLarge},
		}},
		{"NextClaim", []testCase{
			{"Published", s.nextClaimPublished},
			{"LeaseLost", s.nextClaimLeaseLost},
			{"Received", s.nextClaimReceived},
		}},
		{"Received", []testCase{
			{"ReceivedDedup", s.receivedDedup},
			{"ReceivedClaimByGroup", s.receivedClaimByGroup},
			{"DuplicateOfHandled", s.receivedDuplicateOfHandled},
		}},
		{"ReceivedBatch", []testCase{
			{"New", s.batchNew},
			{"Empty", s.batchEmpty},
			{"DuplicateInBatch", s.batchDuplicateInBatch},
			{"DuplicateAcrossBatches", s.batchDuplicateAcrossBatches},
			{"ResetFailed", s.batchResetFailed},
			{"DuplicateOfHandled", s.batchDuplicateOfHandled},
			{"Mix", s.batchMix},
			{"LongMsgID", s.batchLongMsgID},
			{"Atomic", s.batchAtomic},
			{"Concurrent", s.batchConcurrent},
		}},
		{"Text", []testCase{
			{"ReceivedLongMsgID", s.receivedLongMsgID},
			{"FourByteText", s.fourByteText},
			{"InvalidText", s.invalidText},
			{"FailLongErrorText", s.failLongErrorText},
		}},
		{"Dashboard", []testCase{
			{"ListFiltersAndPaging", s.listFiltersAndPaging},
			{"ListGroup", s.listGroup},
			{"CountsHistogramRequeueDelete", s.countsHistogramRequeueDelete},
			{"RequeueDelayed", s.requeueDelayed},
			{"BoundedCounts", s.boundedCounts},
			{"BoundedCountsEmpty", s.boundedCountsEmpty},
		}},
		{"Times", []testCase{
			{"UTC", s.timesUTC},
		}},
		{"Instances", []testCase{
			{"Instances", s.instances},
		}},
		{"Ordering", []testCase{
			{"HeadOnly", s.orderingHeadOnly},
			{"PredecessorBlocks", s.orderingPredecessorBlocks},
			{"Received", s.orderingReceived},
			{"ReceivedBatchIDOrder", s.orderingReceivedBatchIDOrder},
			{"Concurrent", s.orderingConcurrent},
			{"LateCommit", s.orderingLateCommit},
			{"ReceivedConcurrent", s.orderingReceivedConcurrent},
			{"BlockedKeys", s.blockedKeys},
			{"Versions", s.orderingVersions},
			{"Runs", s.orderingRuns},
		}},
		{"TxRead", []testCase{
			{"ListPublishedTx", s.txRead},
		}},
		{"Version", []testCase{
			{"Claims", s.versionClaims},
			{"NextDue", s.versionNextDue},
			{"Received", s.versionReceived},
			{"Invalid", s.versionInvalid},
			{"ListAndClean", s.versionListAndClean},
		}},
	}
}

// newAs returns a fresh store, and the same store as T, an optional
// interface of the storage contract, or skips the test when the storage
// does not implement T.
func newAs[T any, TTx any](t *testing.T, s *suite[TTx]) (storage.Driver[TTx], T) {
	t.Helper()
	d := s.h.New(t)
	v, ok := d.(T)
	if !ok {
		t.Skipf("the storage does not implement %v", reflect.TypeFor[T]())
	}
	return d, v
}

type suite[TTx any] struct {
	h   Harness[TTx]
	gen *ids.Generator
	mu  sync.Mutex
}

var bg = context.Background()

// now is truncated to the microsecond, the precision every backend keeps.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

func (s *suite[TTx]) id() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen == nil {
		s.gen, _ = ids.NewGenerator(-1)
	}
	return s.gen.Next()
}

func (s *suite[TTx]) msg(name string, due time.Time) *storage.Message {
	id := s.id()
	return &storage.Message{
		ID: id, Kind: storage.Published, MsgID: strconv.FormatInt(id, 10), Name: name,
		Headers: map[string]string{"cap-msg-id": strconv.FormatInt(id, 10), "cap-msg-name": name},
		Body:    []byte(`{"n":` + strconv.FormatInt(id%1000, 10) + `}`),
		Status:  storage.StatusScheduled, Added: due, NextAttemptAt: due,
	}
}

// delayed is a published message inserted Delayed, due at due.
func (s *suite[TTx]) delayed(name string, due time.Time) *storage.Message {
	m := s.msg(name, due)
	m.Added, m.Status = now(), storage.StatusDelayed
	return m
}

func (s *suite[TTx]) received(msgID, group, name string, body []byte) *storage.Message {
	return &storage.Message{
		ID: s.id(), Kind: storage.Received, MsgID: msgID, Group: group, Name: name,
		Headers: map[string]string{"cap-msg-id": msgID, "cap-msg-name": name, "cap-msg-group": group},
		Body:    body, Status: storage.StatusScheduled, Added: now(),
	}
}

func (s *suite[TTx]) insert(t *testing.T, d storage.Store, msgs ...*storage.Message) {
	t.Helper()
	if err := d.InsertPublished(bg, msgs, storage.InsertOptions{}); err != nil {
		t.Fatalf("InsertPublished: %v", err)
	}
}

// insertClaimed publishes n messages of topic name due a second before
// at, and claims all of them at at under a lease of a minute, or fails the
// test.
func (s *suite[TTx]) insertClaimed(t *testing.T, d storage.Driver[TTx], name string, at time.Time, n int) []*storage.Message {
	t.Helper()
	msgs := make([]*storage.Message, n)
	for i := range msgs {
		msgs[i] = s.msg(name, at.Add(-time.Second))
	}
	s.insert(t, d, msgs...)
	c := claim(t, d, storage.Published, at, time.Minute, n)
	if len(c) != n {
		t.Fatalf("claimed %d rows, want %d", len(c), n)
	}
	return c
}

func claim(t *testing.T, d storage.Store, kind storage.Kind, at time.Time, lease time.Duration, limit int) []*storage.Message {
	t.Helper()
	got, err := d.Claim(bg, kind, storage.ClaimRequest{Now: at, LeaseUntil: at.Add(lease), Token: ids.Token(), Limit: limit})
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	return got
}

func get(t *testing.T, d storage.Store, kind storage.Kind, id int64) *storage.Message {
	t.Helper()
	m, err := d.Get(bg, kind, id)
	if err != nil {
		t.Fatalf("Get(%d): %v", id, err)
	}
	return m
}

func lease(m *storage.Message) storage.Lease { return storage.Lease{ID: m.ID, Token: m.LeaseToken} }

func idsOf(ms []*storage.Message) []int64 {
	out := make([]int64, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

// completed returns the leases as storage.Completed, each with a
// successful attempt of a millisecond.
func completed(leases []storage.Lease) []storage.Completed {
	out := make([]storage.Completed, len(leases))
	for i, l := range leases {
		out[i] = storage.Completed{Lease: l, Attempt: storage.Attempt{At: now(), Duration: time.Millisecond}}
	}
	return out
}
