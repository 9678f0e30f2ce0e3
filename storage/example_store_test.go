package storage_test

// This file is a complete storage backend written the way a third party
// would write one: against the public contract of package storage and
// nothing else from gocap (in particular nothing under internal/). It keeps
// its rows in memory, which makes it small enough to read in one sitting;
// a real backend does the same things with SQL statements.
//
// Every method maps to one promise of storage.Store; the comments name the
// promise where it is not obvious from the code. The reads, the
// dashboard's changes, the cleaner and the heartbeats are in
// example_store_dashboard_test.go.

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/gocap/gocap/storage"
)

// maxErrorBytes is the size of MemStore's error text "column": LastError
// is cut to it with storage.TruncateText, as a SQL backend cuts it to the
// size of its column.
const maxErrorBytes = 4000

// defaultListLimit is the page size of a List whose Filter.Limit is zero or
// negative, as storage.Filter documents.
const defaultListLimit = 50

// MemStore is an in-memory storage.Driver[*Tx]: the published and received
// tables are maps guarded by one mutex, and an application transaction is
// a [Tx] that buffers the rows it inserts until it commits.
//
// A MemStore is safe for concurrent use. Its zero value is not usable;
// call [NewMemStore].
type MemStore struct {
	mu sync.Mutex
	// rows holds one table per kind, by row id. The stored messages are
	// private copies: callers get copies too, never these.
	rows map[storage.Kind]map[int64]*storage.Message
	// received is the unique index of the received table: the stored
	// (StorableMsgID(MsgID), ValidText(Group)) pair of a row to its id.
	received map[receivedKey]int64
	// instances are the processors' heartbeats, by stored id.
	instances map[string]storage.Instance
}

// receivedKey is the de-duplication key of a received row, in the form in
// which the row stores it.
type receivedKey struct {
	msgID, group string
}

// MemStore implements the whole contract for its own transaction type.
var _ storage.Driver[*Tx] = (*MemStore)(nil)

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore {
	return &MemStore{
		rows: map[storage.Kind]map[int64]*storage.Message{
			storage.Published: {},
			storage.Received:  {},
		},
		received:  map[receivedKey]int64{},
		instances: map[string]storage.Instance{},
	}
}

// Tx is an application transaction on a MemStore. The published rows
// inserted with InsertPublishedTx are buffered in it; Commit makes them
// visible at once, Rollback drops them. A Tx is safe for concurrent use
// and ends with its first Commit or Rollback.
type Tx struct {
	store   *MemStore
	pending []*storage.Message // guarded by store.mu
	done    bool               // guarded by store.mu
}

// errTxDone is returned when a Tx is used after Commit or Rollback.
var errTxDone = errors.New("memstore: transaction has already been committed or rolled back")

// Begin starts an application transaction.
func (s *MemStore) Begin() *Tx { return &Tx{store: s} }

// Commit makes the rows inserted in tx visible, all of them or, if one of
// their ids has been stored meanwhile, none (with an error that is
// storage.ErrIDTaken).
func (tx *Tx) Commit() error {
	s := tx.store
	s.mu.Lock()
	defer s.mu.Unlock()
	if tx.done {
		return errTxDone
	}
	tx.done = true
	if err := s.checkNewIDs(storage.Published, tx.pending); err != nil {
		return err
	}
	for _, m := range tx.pending {
		s.rows[storage.Published][m.ID] = m
	}
	tx.pending = nil
	return nil
}

// Rollback drops the rows inserted in tx.
func (tx *Tx) Rollback() error {
	s := tx.store
	s.mu.Lock()
	defer s.mu.Unlock()
	if tx.done {
		return errTxDone
	}
	tx.done = true
	tx.pending = nil
	return nil
}

// lock locks s unless ctx has ended: every method honours its context
// before it touches the tables. The caller unlocks s.mu.
func (s *MemStore) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	return nil
}

// table returns the table of kind; s.mu is held.
func (s *MemStore) table(kind storage.Kind) (map[int64]*storage.Message, error) {
	t, ok := s.rows[kind]
	if !ok {
		return nil, fmt.Errorf("memstore: unknown kind %d", kind)
	}
	return t, nil
}

// Migrate has nothing to create: the tables exist from NewMemStore on.
func (s *MemStore) Migrate(ctx context.Context) error { return nil }

// InsertPublished inserts published rows, Scheduled or Delayed, all of
// them or none.
// opts.Notify is ignored: a MemStore is not a storage.Listener.
func (s *MemStore) InsertPublished(ctx context.Context, msgs []*storage.Message, opts storage.InsertOptions) error {
	if err := checkVersions(msgs); err != nil {
		return err
	}
	rows := newPublishedRows(msgs)
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if err := s.checkNewIDs(storage.Published, rows); err != nil {
		return err
	}
	for _, m := range rows {
		s.rows[storage.Published][m.ID] = m
	}
	return nil
}

// InsertPublishedTx inserts published rows in tx: they become
// visible only when tx commits. A duplicate id is refused now if it is
// already stored or already in tx, and again at Commit if another
// transaction stored it meanwhile.
func (s *MemStore) InsertPublishedTx(ctx context.Context, tx *Tx, msgs []*storage.Message, opts storage.InsertOptions) error {
	if err := checkVersions(msgs); err != nil {
		return err
	}
	if tx == nil {
		return errors.New("memstore: insert published: transaction is nil")
	}
	if tx.store != s {
		return errors.New("memstore: insert published: transaction of another store")
	}
	rows := newPublishedRows(msgs)
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if tx.done {
		return errTxDone
	}
	if err := s.checkNewIDs(storage.Published, append(slices.Clip(tx.pending), rows...)); err != nil {
		return err
	}
	tx.pending = append(tx.pending, rows...)
	return nil
}

// newPublishedRows returns the rows to store for msgs: private copies,
// Delayed if the message is, else Scheduled, with the text rules applied.
// The columns a caller sets are ID, Name, Headers, Body, Status, Added,
// NextAttemptAt and Policy; a published row's MsgID is the decimal form
// of its ID, and everything else starts empty.
func newPublishedRows(msgs []*storage.Message) []*storage.Message {
	rows := make([]*storage.Message, len(msgs))
	for i, m := range msgs {
		rows[i] = &storage.Message{
			ID:            m.ID,
			Kind:          storage.Published,
			MsgID:         strconv.FormatInt(m.ID, 10),
			Name:          storage.ValidText(m.Name),
			Headers:       validHeaders(m.Headers),
			Body:          bytes.Clone(m.Body),
			Status:        insertStatus(m.Status),
			Added:         m.Added.UTC(),
			NextAttemptAt: m.NextAttemptAt.UTC(),
			Policy:        storage.ValidText(m.Policy),
			OrderingKey:   storage.ValidText(m.OrderingKey),
			Version:       m.Version,
		}
	}
	return rows
}

// checkVersions returns an error, storage.ErrPermanent, when a message's
// Version fails storage.CheckVersion (version isolation, issue #17).
func checkVersions(msgs []*storage.Message) error {
	for _, m := range msgs {
		if err := storage.CheckVersion(m.Version); err != nil {
			return fmt.Errorf("memstore: message %d: %w: %w", m.ID, err, storage.ErrPermanent)
		}
	}
	return nil
}

// insertStatus is the status a published row is inserted with: Delayed
// for a delayed message, Scheduled for any other.
func insertStatus(s storage.Status) storage.Status {
	if s == storage.StatusDelayed {
		return storage.StatusDelayed
	}
	return storage.StatusScheduled
}

// checkNewIDs returns an error that is storage.ErrIDTaken (and so
// storage.ErrPermanent) when one of rows has the id of a stored row of
// kind or of another of rows: retrying the same call cannot help, the
// caller stores the message under a new id. s.mu is held.
func (s *MemStore) checkNewIDs(kind storage.Kind, rows []*storage.Message) error {
	seen := make(map[int64]bool, len(rows))
	for _, m := range rows {
		if _, ok := s.rows[kind][m.ID]; ok || seen[m.ID] {
			return fmt.Errorf("memstore: %s message %d already stored: %w: %w", kind, m.ID, storage.ErrIDTaken, storage.ErrPermanent)
		}
		seen[m.ID] = true
	}
	return nil
}

// validHeaders returns a copy of h with every key and value made valid
// text (storage.ValidText).
func validHeaders(h map[string]string) map[string]string {
	if h == nil {
		return nil
	}
	out := make(map[string]string, len(h))
	for k, v := range h {
		out[storage.ValidText(k)] = storage.ValidText(v)
	}
	return out
}

// Claim leases up to req.Limit due Scheduled and Delayed rows of kind,
// oldest NextAttemptAt first, and makes the Delayed ones Scheduled; of
// the rows with an ordering key, only the head of each key (keyHeads) and
// only while no row of the key is in flight (inFlight). The
// mutex makes a claim atomic, so two claims never take the same row:
// that is this store's SKIP LOCKED. (It looks at every row; a SQL
// backend reads only due ones, through an index.)
func (s *MemStore) Claim(ctx context.Context, kind storage.Kind, req storage.ClaimRequest) ([]*storage.Message, error) {
	if req.Token == 0 || req.Limit <= 0 {
		return nil, fmt.Errorf("memstore: claim: limit %d must be positive and token %d non-zero", req.Limit, req.Token)
	}
	if err := storage.CheckVersion(req.Version); err != nil {
		return nil, fmt.Errorf("memstore: claim: %w", err)
	}
	// The processor names its groups as it was given them; the rows hold
	// them as storage.ValidText stored them.
	var groups map[string]bool
	if kind == storage.Received && req.Groups != nil {
		groups = make(map[string]bool, len(req.Groups))
		for _, g := range req.Groups {
			groups[storage.ValidText(g)] = true
		}
	}
	now := req.Now.UTC()
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	table, err := s.table(kind)
	if err != nil {
		return nil, err
	}
	heads, busy := keyHeads(table, req.FailedHoldsKey), inFlight(table, now)
	var due []*storage.Message
	for _, m := range table {
		if pending(m) && !m.NextAttemptAt.After(now) && !leased(m, now) &&
			(groups == nil || groups[m.Group]) && m.Version == req.Version &&
			(m.OrderingKey == "" || heads[orderKey(m)] == m.ID && !busy[orderKey(m)]) {
			due = append(due, m)
		}
	}
	slices.SortFunc(due, func(a, b *storage.Message) int {
		return cmp.Or(a.NextAttemptAt.Compare(b.NextAttemptAt), cmp.Compare(a.ID, b.ID))
	})
	due = due[:min(len(due), req.Limit)]
	out := make([]*storage.Message, len(due))
	for i, m := range due {
		m.Status = storage.StatusScheduled
		m.LeaseToken, m.LeaseUntil = req.Token, req.LeaseUntil.UTC()
		out[i] = clone(m)
	}
	return out, nil
}

// pending reports whether m waits for an attempt: Scheduled, or Delayed
// until its due time.
func pending(m *storage.Message) bool {
	return m.Status == storage.StatusScheduled || m.Status == storage.StatusDelayed
}

// NextDue returns the earliest NextAttemptAt after req.After among the
// pending rows of kind and of req.Version, or the zero time if there is
// none.
func (s *MemStore) NextDue(ctx context.Context, kind storage.Kind, req storage.DueRequest) (time.Time, error) {
	if err := storage.CheckVersion(req.Version); err != nil {
		return time.Time{}, fmt.Errorf("memstore: next due: %w", err)
	}
	if err := s.lock(ctx); err != nil {
		return time.Time{}, err
	}
	defer s.mu.Unlock()
	table, err := s.table(kind)
	if err != nil {
		return time.Time{}, err
	}
	var next time.Time
	for _, m := range table {
		if pending(m) && m.Version == req.Version && m.NextAttemptAt.After(req.After) && (next.IsZero() || m.NextAttemptAt.Before(next)) {
			next = m.NextAttemptAt
		}
	}
	return next, nil
}

// appendAttempt adds a to the history of m, its error cut to
// storage.MaxAttemptErrorBytes, keeping the last
// storage.MaxAttemptHistory attempts.
func appendAttempt(m *storage.Message, a storage.Attempt) {
	a.At, a.Error = a.At.UTC(), storage.TruncateText(a.Error, storage.MaxAttemptErrorBytes)
	m.Attempts = append(m.Attempts, a)
	if n := len(m.Attempts); n > storage.MaxAttemptHistory {
		m.Attempts = slices.Clone(m.Attempts[n-storage.MaxAttemptHistory:])
	}
}

// leased reports whether m is held by a lease that has not ended at now:
// a lease ends at its LeaseUntil.
func leased(m *storage.Message, now time.Time) bool {
	return m.LeaseToken != 0 && m.LeaseUntil.After(now)
}

// held returns the row of table that lease still holds: Scheduled, with
// the lease's token. It returns nil for a row that is gone or has been
// claimed again, requeued or finished since.
func held(table map[int64]*storage.Message, lease storage.Lease) *storage.Message {
	m := table[lease.ID]
	if m == nil || m.Status != storage.StatusScheduled || lease.Token == 0 || m.LeaseToken != lease.Token {
		return nil
	}
	return m
}

// Succeed marks the rows still held by the leases of done Succeeded,
// expiring at expiresAt, appends each one's attempt to its history and
// clears its lease. It returns how many it marked.
func (s *MemStore) Succeed(ctx context.Context, kind storage.Kind, done []storage.Completed, expiresAt time.Time) (int64, error) {
	if err := s.lock(ctx); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	table, err := s.table(kind)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, c := range done {
		m := held(table, c.Lease)
		if m == nil {
			continue
		}
		appendAttempt(m, c.Attempt)
		m.Status = storage.StatusSucceeded
		m.ExpiresAt = expiresAt.UTC()
		m.LeaseToken, m.LeaseUntil = 0, time.Time{}
		n++
	}
	return n, nil
}

// Release gives up the leases of rows whose attempt did not take place:
// each row still held stays Scheduled with its retry count, due at
// nextAttemptAt, with reason as LastError. It returns how many it released.
func (s *MemStore) Release(ctx context.Context, kind storage.Kind, leases []storage.Lease, nextAttemptAt time.Time, reason string) (int64, error) {
	reason = storage.TruncateText(reason, maxErrorBytes)
	if err := s.lock(ctx); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	table, err := s.table(kind)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, l := range leases {
		m := held(table, l)
		if m == nil {
			continue
		}
		m.NextAttemptAt = nextAttemptAt.UTC()
		m.LastError = reason
		m.LeaseToken, m.LeaseUntil = 0, time.Time{}
		n++
	}
	return n, nil
}

// Fail records a failed attempt of the row held by lease: one more retry,
// the error text, and either Failed (permanent, or the attempts are used
// up) or Scheduled again at f.NextAttemptAt. A MaxAttempts of zero or less
// sets no limit, as in the SQL backends. It returns storage.ErrLeaseLost
// if lease no longer holds the row.
func (s *MemStore) Fail(ctx context.Context, kind storage.Kind, lease storage.Lease, f storage.Failure) (storage.FailResult, error) {
	text := storage.TruncateText(f.Error, maxErrorBytes)
	if err := s.lock(ctx); err != nil {
		return storage.FailResult{}, err
	}
	defer s.mu.Unlock()
	table, err := s.table(kind)
	if err != nil {
		return storage.FailResult{}, err
	}
	res, ok := failHeld(table, lease, f, text)
	if !ok {
		return storage.FailResult{}, storage.ErrLeaseLost
	}
	return res, nil
}
