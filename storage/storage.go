package storage

import (
	"context"
	"errors"
	"time"
)

// Kind selects one of the two message tables.
type Kind uint8

const (
	// Published is the outbox: messages the application publishes.
	Published Kind = 1
	// Received is the inbox: messages consumed from a transport.
	Received Kind = 2
)

// String returns "published" or "received".
func (k Kind) String() string {
	switch k {
	case Published:
		return "published"
	case Received:
		return "received"
	default:
		return "unknown"
	}
}

// Status is the state of a stored message. The values are the strings stored
// in the status column; they match DotNetCore.CAP's StatusName values.
type Status string

const (
	// StatusDelayed: a published message that waits for its due time
	// (NextAttemptAt) before its first attempt; DotNetCore.CAP's name.
	StatusDelayed Status = "Delayed"
	// StatusScheduled: the message waits to be sent (published) or handled
	// (received), possibly after earlier failed attempts.
	StatusScheduled Status = "Scheduled"
	// StatusSucceeded: sent and confirmed by the broker, or handled without error.
	StatusSucceeded Status = "Succeeded"
	// StatusFailed: every allowed attempt failed, or the message can never
	// succeed (for example a body that does not decode). It stays until it
	// expires or a person requeues it.
	StatusFailed Status = "Failed"
)

// Statuses lists every Status in display order.
var Statuses = []Status{StatusDelayed, StatusScheduled, StatusSucceeded, StatusFailed}

// Valid reports whether s is one of the known statuses.
func (s Status) Valid() bool {
	return s == StatusDelayed || s == StatusScheduled || s == StatusSucceeded || s == StatusFailed
}

// Message is one row of the published or the received table.
type Message struct {
	// ID is the row's primary key, a snowflake id. For a published message it
	// is also the message id sent on the wire as cap-msg-id.
	ID int64
	// Kind tells which table the row belongs to.
	Kind Kind
	// MsgID is the message id as carried on the wire (cap-msg-id). For a
	// published row it is the decimal form of ID. For a received row it is
	// whatever the publisher sent (or a generated id when it sent none);
	// MsgID and Group together are unique in the received table.
	MsgID string
	// Name is the topic (cap-msg-name).
	Name string
	// Group is the consumer group of a received row; empty for published rows.
	Group string
	// Headers are the transport headers, cap-* included.
	Headers map[string]string
	// Body is the payload exactly as sent on the wire.
	Body []byte
	// Status is the row's state.
	Status Status
	// Retries counts failed attempts so far.
	Retries int
	// LastError is the error text of the most recent failed attempt.
	LastError string
	// Added is when the row was inserted.
	Added time.Time
	// NextAttemptAt is, for a Scheduled row, the earliest time it may be
	// claimed.
	NextAttemptAt time.Time
	// ExpiresAt is when the cleaner may delete the row; zero while the row
	// is Scheduled.
	ExpiresAt time.Time
	// LeaseToken identifies the current claim; zero when unclaimed.
	LeaseToken int64
	// LeaseUntil is when the current claim ends; zero when unclaimed. A
	// claimed row is not claimed again before then.
	LeaseUntil time.Time
	// Policy is the row's retry policy as the processor encoded it when
	// the row was inserted; a Store keeps it as it is and never reads it.
	// Empty means the processor's default policy.
	Policy string
	// Attempts are the row's last attempts, oldest first: at most
	// MaxAttemptHistory, each appended by Succeed or Fail.
	Attempts []Attempt
	// OrderingKey, when not empty, puts the row in an ordered sequence:
	// the rows of one kind, Group and OrderingKey are claimed one at a
	// time, in id order (see "Ordering keys" in the package doc). Empty
	// means unordered. At most MaxOrderingKeyBytes of valid UTF-8 without
	// NUL; a Store stores it as it is given (the caller checks it).
	OrderingKey string

	// --- version isolation (issue #17) ---

	// Version is the version of the processor that published (published
	// rows) or received (received rows) the message, as DotNetCore.CAP's
	// Version column; empty for a processor without one (see
	// [CheckVersion]). Claims and NextDue of one version never see the
	// rows of another (ClaimRequest.Version).
	Version string
}

// MaxAttemptHistory is the number of attempts a row keeps in
// Message.Attempts; older ones are dropped.
const MaxAttemptHistory = 20

// MaxAttemptErrorBytes bounds the error text of one recorded attempt
// (the row's LastError keeps the whole text, up to the backend's limit).
const MaxAttemptErrorBytes = 500

// Attempt is one attempt of a message: a send to the broker or a handler
// run.
type Attempt struct {
	// At is when the attempt started.
	At time.Time
	// Duration is how long it took.
	Duration time.Duration
	// Error is empty for an attempt that succeeded, else its error text
	// (cut with TruncateText to MaxAttemptErrorBytes by the Store).
	Error string
}

// Completed is a leased row whose attempt succeeded.
type Completed struct {
	Lease
	// Attempt is the successful attempt, appended to the row's history.
	Attempt Attempt
}

// Lease identifies one claim of one row: the row id and the token of the
// claim. Succeed and Fail only act on a row whose token still matches.
type Lease struct {
	ID    int64
	Token int64
}

// ClaimRequest asks for up to Limit due rows.
type ClaimRequest struct {
	// Now is the current time: Scheduled and Delayed rows with
	// NextAttemptAt <= Now whose lease, if any, ended by Now are due.
	Now time.Time
	// LeaseUntil becomes the claimed rows' LeaseUntil.
	LeaseUntil time.Time
	// Token is stored on the claimed rows as their LeaseToken. Must be non-zero.
	Token int64
	// Limit is the largest number of rows to claim. Must be positive.
	Limit int
	// Groups, when not nil, restricts a claim of received rows to these
	// consumer groups: a processor claims only the rows it has handlers
	// for. The names are those the processor stored rows with (a Store
	// compares them in the form it stores group names, see ValidText). It
	// is ignored for published rows.
	Groups []string
	// FailedHoldsKey makes a Failed row hold its ordering key (see
	// "Ordering keys" above): the rows after it in its sequence are not
	// due until it is requeued and succeeds, or is deleted (the
	// processor's "block" policy). When false a Failed row releases its
	// key ("skip").
	FailedHoldsKey bool
	// DueFrom, when not zero, lets the claim leave out the rows due before
	// it (NextAttemptAt < DueFrom): the caller found them in an earlier
	// claim that read from the start, and claims from the start again
	// (DueFrom zero) now and then for the rows that became claimable
	// there since (a transaction that committed late, the end of another
	// holder's lease). It is a bound a Store may use or ignore: on
	// PostgreSQL it spares the claim the pending index's entries of the
	// rows completed since the table's last VACUUM, which lie before the
	// rows still due.
	DueFrom time.Time
	// Run, when above 1, lets the claim lease with the head of a sequence
	// the rows that follow it in that sequence, up to Run rows in all: a
	// run. The rows of a run are consecutive in the sequence's id order,
	// each due and not leased (the first row that is not stops the run:
	// a row due later, leased, or Failed while Failed rows hold their
	// key), and are leased under Token like their head; the rows a run
	// adds do not count against Limit. The holder attempts them one after
	// the other in id order, and releases ([Store.Release]) those after
	// one that failed, without attempting them. A Store may ignore Run
	// and lease heads alone: runs save the writes of a claim per row, not
	// order.
	Run int

	// --- version isolation (issue #17) ---

	// Version restricts the claim to the rows of this version
	// (Message.Version), as DotNetCore.CAP's retry queries filter on
	// "Version" = @Version: processors of one version never claim the rows
	// of another. The empty version is a version of its own. It must pass
	// [CheckVersion].
	Version string
}

// DueRequest asks [Store.NextDue] for the earliest due time.
type DueRequest struct {
	// After: only times strictly after it count.
	After time.Time

	// --- version isolation (issue #17) ---

	// Version restricts the answer to the rows of this version, as
	// ClaimRequest.Version restricts a claim. It must pass [CheckVersion].
	Version string
}

// Failure describes a failed attempt reported by the holder of a lease.
type Failure struct {
	// Error is the error text to store as LastError.
	Error string
	// Now is the time of the failure.
	Now time.Time
	// NextAttemptAt is when the row becomes due again if it stays Scheduled.
	NextAttemptAt time.Time
	// MaxAttempts is the number of attempts allowed in all: when the
	// incremented retry count reaches it, the row becomes Failed. Zero or
	// less means no limit.
	MaxAttempts int
	// Permanent makes the row Failed at once, whatever its retry count.
	Permanent bool
	// ExpiresAt is stored when the row becomes Failed.
	ExpiresAt time.Time
	// Attempt is the failed attempt, appended to the row's history; its
	// Error is Error (the Store cuts it to MaxAttemptErrorBytes).
	Attempt Attempt
}

// FailResult is the state of a row after [Store.Fail].
type FailResult struct {
	// Retries is the retry count after the increment.
	Retries int
	// Status is StatusScheduled when another attempt will follow, or
	// StatusFailed when none will.
	Status Status
}

// Filter selects rows for the dashboard. Zero fields other than Kind do
// not filter. Text filters compare in the form the Store stores text (see
// the package doc), so a value finds the row it was stored with.
type Filter struct {
	// Kind is the table; required.
	Kind   Kind
	Status Status
	// Name matches the topic exactly.
	Name string
	// Group matches the consumer group exactly; ignored for published rows.
	Group string
	// MsgID matches the wire message id exactly (for a published row, the
	// decimal id: a text that is not a number matches nothing).
	MsgID string
	// Content matches rows whose body contains this text.
	Content string
	// Version matches the version (Message.Version) exactly; empty does
	// not filter (rows without a version cannot be selected alone).
	Version string
	// BeforeID asks for rows with ID < BeforeID (keyset pagination; rows are
	// returned newest first, that is by ID descending). Zero starts at the newest.
	BeforeID int64
	// Limit is the page size; zero or negative means 50.
	Limit int
}

// HistogramBucket counts the rows of one status added in one time bucket.
type HistogramBucket struct {
	// Start is the start of the bucket.
	Start  time.Time
	Status Status
	Count  int64
}

// Instance is a processor running against the database, as recorded by its
// heartbeat.
type Instance struct {
	// ID is unique per running processor.
	ID       string
	Hostname string
	PID      int
	Started  time.Time
	LastSeen time.Time
}

// Errors returned by a Store.
var (
	// ErrNotFound: no row has the given id.
	ErrNotFound = errors.New("storage: message not found")
	// ErrLeaseLost: the row is no longer claimed by the given lease (its
	// lease ran out and another processor took it, or it was requeued or
	// deleted meanwhile). The outcome was not recorded.
	ErrLeaseLost = errors.New("storage: lease lost")
	// ErrPermanent marks an error that retrying the same call cannot fix:
	// the database refused the data itself (a data exception, a value over
	// a limit), as opposed to a transient failure (connection lost,
	// deadlock, serialization failure, timeout, database shutting down).
	// A backend wraps such errors so that errors.Is(err, ErrPermanent)
	// holds; callers retry only the other ones.
	ErrPermanent = errors.New("storage: permanent error")
	// ErrIDTaken: the id of a message to insert is that of a stored row of
	// another message (two processes made the same id: they share a
	// snowflake node id). Nothing of the insert is stored, and a
	// transaction of the application stays usable, so the caller inserts
	// the message again under a new id. An error that is ErrIDTaken is
	// also ErrPermanent: the same call cannot succeed.
	ErrIDTaken = errors.New("storage: id taken by another message")
)

// Store is everything a backend does outside the application's transactions.
// Every method is safe for concurrent use.
type Store interface {
	// Migrate creates the tables and indexes if they do not exist. It is
	// idempotent and safe to run from several processes at once.
	Migrate(ctx context.Context) error

	// InsertPublished inserts published rows in a transaction of its own
	// (for Publish outside an application transaction): each with the
	// Status of its Message, Scheduled or Delayed, due at NextAttemptAt,
	// and with its Policy and Version (a Version that fails
	// [CheckVersion] is an error, and nothing is inserted). If the ID of
	// one of msgs is stored already, it returns an error that is
	// [ErrIDTaken] and inserts none of msgs.
	InsertPublished(ctx context.Context, msgs []*Message, opts InsertOptions) error

	// InsertReceived stores a received message m (ID, MsgID, Name, Group,
	// Headers, Body, Added, Version set) as Scheduled, due at m.Added and claimed
	// under the lease (token, leaseUntil). If a row with the same MsgID and
	// Group exists: a Failed row is reset to Scheduled with zero retries,
	// no error and no expiry, due at m.Added and claimed under the lease
	// (ReceivedInsert.Reset, with the stored row's id); any other row is
	// left alone (not Claimed). token must be non-zero.
	//
	// A message with an OrderingKey is stored claimed like this only when
	// its row is the head of its sequence: no other row of the same Group,
	// Version and OrderingKey is stored that is not Succeeded (pending,
	// leased or Failed), checked atomically with the insert against
	// concurrent inserts and claims (see "Ordering keys"). Otherwise it is
	// stored for a claim: due at m.Added but not leased (LeaseUntil zero;
	// its LeaseToken is token, which only marks it as stored by this
	// call), and the result says Queued instead of Claimed; its turn comes
	// from Claim, which keeps the key's order. A Failed duplicate of a
	// keyed message is reset for a claim (Queued). A Store may store every
	// keyed message for a claim (the head's extra claim costs a round
	// trip, not order).
	//
	// If m.ID is the id of a stored row of another MsgID or Group, it
	// stores nothing, leaves that row alone and returns an error that is
	// [ErrIDTaken].
	InsertReceived(ctx context.Context, m *Message, token int64, leaseUntil time.Time) (ReceivedInsert, error)

	// Claim leases up to req.Limit due rows of kind and of version
	// req.Version (Scheduled or Delayed, see ClaimRequest), oldest NextAttemptAt first, skipping rows
	// that another claim holds at the same moment (FOR UPDATE SKIP LOCKED
	// or equivalent); a claimed Delayed row becomes Scheduled. It reads
	// only due rows (through an index), so rows due later cost a claim
	// nothing. It holds no transaction open after it returns.
	Claim(ctx context.Context, kind Kind, req ClaimRequest) ([]*Message, error)

	// Succeed marks the leased rows Succeeded with the given expiry,
	// appends each one's attempt to its history and clears its lease
	// (token and LeaseUntil). Rows whose lease no longer matches, or that
	// are no longer Scheduled, are left alone; it returns how many rows it
	// marked.
	Succeed(ctx context.Context, kind Kind, done []Completed, expiresAt time.Time) (int64, error)

	// Release gives up leases of rows whose attempt did not take place
	// (the transport could not reach its broker): each row still held
	// under its lease stays Scheduled, due at nextAttemptAt, with its
	// retry count unchanged and LastError set to reason; the lease is
	// cleared. Rows whose lease no longer matches are left alone. It
	// returns how many rows it released.
	Release(ctx context.Context, kind Kind, leases []Lease, nextAttemptAt time.Time, reason string) (int64, error)

	// Fail records a failed attempt of a leased row: retries is incremented
	// in SQL, LastError set, f.Attempt appended to the row's history, and
	// the row becomes Failed (with f.ExpiresAt)
	// if f.Permanent or the new retry count reaches f.MaxAttempts, else it
	// stays Scheduled with NextAttemptAt = f.NextAttemptAt. The lease is
	// cleared. It returns ErrLeaseLost if the lease no longer matches.
	Fail(ctx context.Context, kind Kind, lease Lease, f Failure) (FailResult, error)

	// NextDue returns the earliest NextAttemptAt after req.After among the
	// Scheduled and Delayed rows of kind and of version req.Version, or the
	// zero time if there is none: the processor sleeps until then instead
	// of polling faster. It reads one index entry.
	NextDue(ctx context.Context, kind Kind, req DueRequest) (time.Time, error)

	// Get returns one row, or ErrNotFound.
	Get(ctx context.Context, kind Kind, id int64) (*Message, error)

	// List returns one page of rows matching f, newest first.
	List(ctx context.Context, f Filter) ([]*Message, error)

	// Counts returns the number of rows of kind in each status, exactly:
	// it may read the whole table, which takes a second and more on tens
	// of millions of rows. A Store that can answer in bounded time also
	// implements [BoundedCounter], which the dashboard uses.
	Counts(ctx context.Context, kind Kind) (map[Status]int64, error)

	// Histogram counts the rows of kind added at or after since, by
	// status and by bucket of the given width (at least a millisecond; a
	// shorter one is an error),
	// buckets aligned on multiples of the width since the Unix epoch. The
	// time a row was added is the one its id encodes (see [IDTime]), so a
	// backend can answer from its primary key (see [MinIDAt]).
	Histogram(ctx context.Context, kind Kind, since time.Time, bucket time.Duration) ([]HistogramBucket, error)

	// Requeue makes the given rows Scheduled and due at now, with zero
	// retries, no error, no expiry and no lease, keeping their Policy (a
	// Delayed row is thus sent now). A Scheduled row whose lease has not
	// ended is in flight and is left alone. It returns how
	// many rows it changed.
	Requeue(ctx context.Context, kind Kind, ids []int64, now time.Time) (int64, error)

	// Delete removes the given rows; it returns how many it removed.
	Delete(ctx context.Context, kind Kind, ids []int64) (int64, error)

	// DeleteExpired removes at most limit rows whose ExpiresAt is set and
	// not after now, earliest expiry first; it returns how many it
	// removed. A limit below 1 is an error. It removes the expired rows of
	// every version, as DotNetCore.CAP's DeleteExpiresAsync does (its
	// DELETE has no condition on "Version").
	DeleteExpired(ctx context.Context, kind Kind, now time.Time, limit int) (int64, error)

	// Heartbeat records that the processor inst is alive at inst.LastSeen.
	Heartbeat(ctx context.Context, inst Instance) error

	// Instances lists the processors whose last heartbeat is after since.
	Instances(ctx context.Context, since time.Time) ([]Instance, error)

	// RemoveInstance deletes the heartbeat row of a processor that stopped,
	// and those last seen before olderThan when olderThan is not zero.
	RemoveInstance(ctx context.Context, id string, olderThan time.Time) error
}

// Driver is a Store that can also insert published rows inside the
// application's own transaction, of type TTx (pgx.Tx for PostgreSQL, *sql.Tx
// for database/sql backends).
type Driver[TTx any] interface {
	Store
	// InsertPublishedTx inserts published rows using tx, as
	// InsertPublished does. The rows become visible, and are sent, only if
	// tx commits. A nil tx is an error. An id stored already (by a
	// committed transaction, or by one in flight that commits) is an
	// error that is [ErrIDTaken], as for InsertPublished: none of msgs is
	// inserted, and tx stays usable (on PostgreSQL, it is not aborted), so
	// that the caller can insert them under new ids and commit.
	InsertPublishedTx(ctx context.Context, tx TTx, msgs []*Message, opts InsertOptions) error
}

// ReceivedBatchInserter is implemented by a Store that stores many
// received messages in one round trip. The processor uses it, when the
// transport hands over deliveries in batches, instead of one
// InsertReceived per delivery; the conformance suite checks it when a
// Store has it.
type ReceivedBatchInserter interface {
	// InsertReceivedBatch stores msgs as InsertReceived stores each one,
	// all under the lease (token, leaseUntil), in one statement or one
	// transaction, and returns one result per message, in order. A message
	// whose MsgID and Group repeat an earlier one of the same batch is a
	// duplicate of it (not Claimed). Of the keyed messages of one
	// sequence in a batch, only the one with the smallest ID can be
	// stored claimed (as its head); the others are Queued. On error
	// nothing is stored; a message whose ID is that of a stored row of
	// another MsgID or Group is an error that is [ErrIDTaken].
	InsertReceivedBatch(ctx context.Context, msgs []*Message, token int64, leaseUntil time.Time) ([]ReceivedInsert, error)
}

// InsertOptions qualify an insert of published rows.
type InsertOptions struct {
	// Notify asks a store that is a [Listener] to notify the listening
	// processors when the rows commit; other stores ignore it. The
	// processor decides which publishes notify (PostgreSQL commits
	// notifying transactions one at a time, so it sets Notify on at most
	// one publish every few milliseconds and polls for the others).
	Notify bool
}

// ReceivedInsert is the outcome of [Store.InsertReceived].
type ReceivedInsert struct {
	// ID is the id of the row the call stored (Claimed or Queued): the
	// message's, or that of the existing Failed row with the same MsgID
	// and Group that it reset. For a duplicate left alone (neither Claimed
	// nor Queued) it is zero or the existing row's id, as the Store
	// chooses: a caller must not rely on it then.
	ID int64
	// Claimed reports that the caller now holds the row's lease: the row
	// is new, or was a Failed duplicate that was reset.
	Claimed bool
	// Reset reports that an existing Failed row was reset to Scheduled
	// and claimed (or queued): its stored content, not the delivery's, is
	// the row's.
	Reset bool
	// Queued reports that a message with an OrderingKey was stored for a
	// claim (new and not the head of its key, or a Failed duplicate
	// reset): it is due but not leased; a Claim takes it when its turn
	// comes. Claimed is then false. A keyed message stored as the head of
	// its key is Claimed, like a message without a key.
	Queued bool
}

// Listener is implemented by a Store that can tell processors promptly that
// a transaction inserting published rows with InsertOptions.Notify has
// committed (PostgreSQL's LISTEN/NOTIFY). Processors without one rely on
// their own in-process signal and on polling.
type Listener interface {
	// Listen calls notify when such a transaction commits, until ctx ends.
	// It returns ctx's error when ctx ends, or an error if it cannot
	// listen; the processor then falls back to polling and calls it again.
	Listen(ctx context.Context, notify func()) error
}
