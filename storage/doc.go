// Package storage defines the contract between gocap's processor and the
// database that holds the published (outbox) and received (inbox) tables.
//
// A backend lives in a sub-package (storage/postgres, storage/mysql,
// storage/sqlite) and implements [Driver] for the transaction type of its
// database library. The conformance suite in storage/storagetest checks that
// a backend keeps every promise written down here; a third-party backend
// runs the same suite.
//
// # The life of a row
//
// A row is inserted Scheduled with NextAttemptAt set to the time it may first
// be tried, or, for a delayed message, Delayed with NextAttemptAt set to its
// due time (a claim makes a due Delayed row Scheduled). A processor claims due rows with [Store.Claim]: the claim sets a
// lease token and LeaseUntil, the end of the lease, and the row is
// invisible to other claims until the lease ends. The holder of the lease
// then reports the outcome with [Store.Succeed] or [Store.Fail] (or, for
// many failures at once, [FailBatcher.FailBatch]; for successes that
// also claim the next row of their ordering keys,
// [NextClaimer.SucceedClaimNext]); all are
// guarded by the lease token, so a processor whose lease ran out cannot
// overwrite the work of the processor that took the row over. A row whose
// holder died simply becomes due again when its lease ends.
//
// All times passed to and returned from a Store are UTC.
//
// # Text
//
// A Store stores any Go string it is given, including text a database
// cannot hold as it is: strings that are not valid UTF-8 or hold NUL
// characters are stored as [ValidText] makes them, error texts are cut to
// the backend's column size with [TruncateText], and a received message id
// longer than MaxMsgIDBytes is stored, and de-duplicated, as
// [StorableMsgID] makes it. Errors the database raises for the data itself
// are wrapped with [ErrPermanent].
//
// # Ordering keys
//
// A row with an OrderingKey is due, besides the conditions of
// [ClaimRequest], only while (a) no other row of the same kind, Version,
// Group and OrderingKey (its sequence) with a smaller ID is Scheduled or
// Delayed (due or not, leased or not), or Failed when the request says
// Failed rows hold their key (ClaimRequest.FailedHoldsKey), and (b) no
// other row of its sequence is in flight: Scheduled under a lease that
// ends after ClaimRequest.Now. So at most one row of a key is in flight
// anywhere, always; a row waiting for its retry holds its key, and the
// next row of a key becomes due when the previous one's Succeed commits.
// Rows without a key are not affected. The one exception is a run
// (ClaimRequest.Run): rows of a key that one claim leases together, under
// one token, to one holder that attempts them one after the other in id
// order; to every other claim the run is one row in flight.
//
// The order of a key is the order in which its rows become visible to
// the claim: among the rows visible together, the order of their ids
// (for published rows the order of the publishes in one process, as
// snowflake ids grow; for received rows the order in which they were
// stored); a row that becomes visible after a row of its key with a
// larger id was claimed (two transactions publishing one key, committed
// in the order opposite to their ids) waits for that row to leave flight
// and goes after it. For transactions that commit one after the other,
// that is commit order.
//
// A Store enforces this in the claim itself, so that it holds between
// processes, between concurrent claims, and between claims and the
// inserts of received rows that lease a keyed row (see
// [Store.InsertReceived]): whatever leases a row of a key checks (b)
// against every lease committed before it, for example under a lock of
// the key held from that check until it commits (PostgreSQL's advisory
// locks), under locking reads that wait for concurrent leases (MySQL),
// or with one writer at a time (SQLite).
//
// A key's sequence is that of one Version: the rows of other versions
// never hold it. Processors of one version claim only that version's
// rows (ClaimRequest.Version), so a row of another version holding the
// key would stall it for as long as that version has rows left — forever
// once its processors are retired, as in a rolling upgrade. Each version
// keeps its own order instead; the received rows of a versioned
// processor are in groups of their own (the outbox adds "." + Version to
// the group name) anyway.
package storage
