package sqlstore

import (
	"cmp"
	"slices"
	"time"

	"github.com/gocap/gocap/storage"
)

// ReceivedRow is a received message in the form a storage inserts it:
// the text of each column made storable (the message id by
// storage.StorableMsgID, the others by the storage's fit functions) and
// the headers encoded. InsertReceived and InsertReceivedBatch of every
// SQL storage build their rows with it, so both store a message alike.
type ReceivedRow struct {
	ID      int64
	MsgID   string // storage.StorableMsgID of the message id: the de-duplication key with Group
	Group   string
	Name    string
	Headers string // JSON, see HeadersJSON
	Body    []byte // never nil
	Added   time.Time
	Policy  string
	// OrderingKey is the message's ordering key, nil for none: a keyed row
	// is stored leased only as the head of its key (see
	// storage.Store.InsertReceived).
	OrderingKey *string
	Version     string // storage.Message.Version, checked
}

// Fit makes a text storable in one column: storage.ValidText, or a
// function that also cuts it to the column's size (MySQL's VARCHAR).
type Fit func(string) string

// NewReceivedRow returns the row of m, with its group and name made
// storable by fitGroup and fitName.
func NewReceivedRow(m *storage.Message, fitGroup, fitName Fit) (ReceivedRow, error) {
	h, err := HeadersJSON(m)
	if err != nil {
		return ReceivedRow{}, err
	}
	v, err := MessageVersion(m)
	if err != nil {
		return ReceivedRow{}, err
	}
	return ReceivedRow{
		ID: m.ID, MsgID: storage.StorableMsgID(m.MsgID), Group: fitGroup(m.Group), Name: fitName(m.Name),
		Headers: h, Body: NonNil(m.Body), Added: m.Added.UTC(), Policy: storage.ValidText(m.Policy),
		OrderingKey: OrderingKey(m), Version: v,
	}, nil
}

// OrderingKey is the value of m's ordering_key column: nil (NULL) for a
// message without one.
func OrderingKey(m *storage.Message) *string {
	if m.OrderingKey == "" {
		return nil
	}
	k := storage.ValidText(m.OrderingKey)
	return &k
}

// LeaseUntil is the lease_until of r stored under a lease ending at
// leaseUntil by a storage that stores every keyed row for a claim: none
// (nil, NULL) for a keyed row.
func (r *ReceivedRow) LeaseUntil(leaseUntil time.Time) *time.Time {
	if r.OrderingKey != nil {
		return nil
	}
	u := leaseUntil.UTC()
	return &u
}

// Result is the outcome of storing r: id is the id of the row stored
// under r's message id and group (zero when the storage does not know
// it), stored whether the insert stored (inserted or reset) that row,
// and leased whether it holds the caller's lease. A row without a key is
// always stored leased: Claimed; a keyed row is Claimed as the head of
// its key, else Queued (see storage.Store.InsertReceived). A stored row
// that is not r's own is a Failed duplicate that was reset.
func (r *ReceivedRow) Result(id int64, stored, leased bool) storage.ReceivedInsert {
	if r.OrderingKey != nil && !leased {
		// A keyed row stored for a claim, not leased.
		return storage.ReceivedInsert{ID: id, Queued: stored, Reset: stored && id != r.ID}
	}
	return storage.ReceivedInsert{ID: id, Claimed: stored, Reset: stored && id != r.ID}
}

// Heads marks, for each row of b, whether it may be stored as the head
// of its ordering key (storage.ReceivedBatchInserter): a keyed row with
// the smallest id among the batch's rows of its key, group and version.
// Rows without a key are not marked.
func (b *ReceivedBatch) Heads() []bool {
	type sequence struct{ key, group, version string }
	first := map[sequence]int{}
	for i, r := range b.Rows {
		if r.OrderingKey == nil {
			continue
		}
		k := sequence{*r.OrderingKey, r.Group, r.Version}
		if j, ok := first[k]; !ok || r.ID < b.Rows[j].ID {
			first[k] = i
		}
	}
	heads := make([]bool, len(b.Rows))
	for _, i := range first {
		heads[i] = true
	}
	return heads
}

// ReceivedKey is the de-duplication key of a received row, as stored.
type ReceivedKey struct{ MsgID, Group string }

// Key returns r's de-duplication key.
func (r *ReceivedRow) Key() ReceivedKey { return ReceivedKey{r.MsgID, r.Group} }

// ReceivedBatch is the argument of storage.ReceivedBatchInserter's
// InsertReceivedBatch prepared for a storage: Rows holds one row per
// distinct (message id, group) of the batch, made from the first message
// that has it, sorted by that key. The sort makes concurrent batches
// take the locks of their rows in the same order, so that two batches
// holding the same ids wait for each other instead of deadlocking; the
// de-duplication keeps a statement from touching one row twice (which
// PostgreSQL's ON CONFLICT DO UPDATE refuses).
type ReceivedBatch struct {
	Rows []ReceivedRow
	// row is, for each message of the batch, the index in Rows of its
	// row; first tells whether the message is the one the row was made
	// from (the others repeat an earlier message of the batch).
	row   []int
	first []bool
}

// NewReceivedBatch checks the lease token and prepares msgs (see
// ReceivedBatch), with groups and names made storable by fitGroup and
// fitName.
func NewReceivedBatch(msgs []*storage.Message, token int64, fitGroup, fitName Fit) (*ReceivedBatch, error) {
	if err := CheckReceivedToken(token); err != nil {
		return nil, err
	}
	b := &ReceivedBatch{row: make([]int, len(msgs)), first: make([]bool, len(msgs))}
	seen := make(map[ReceivedKey]int, len(msgs))
	for i, m := range msgs {
		r, err := NewReceivedRow(m, fitGroup, fitName)
		if err != nil {
			return nil, err
		}
		if j, ok := seen[r.Key()]; ok {
			b.row[i] = j
			continue
		}
		seen[r.Key()] = len(b.Rows)
		b.row[i], b.first[i] = len(b.Rows), true
		b.Rows = append(b.Rows, r)
	}
	// Sort the rows, and renumber the messages' indexes to match.
	order := make([]int, len(b.Rows))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(x, y int) int {
		kx, ky := b.Rows[x].Key(), b.Rows[y].Key()
		return cmp.Or(cmp.Compare(kx.MsgID, ky.MsgID), cmp.Compare(kx.Group, ky.Group))
	})
	sorted := make([]ReceivedRow, len(b.Rows))
	at := make([]int, len(b.Rows))
	for to, from := range order {
		sorted[to], at[from] = b.Rows[from], to
	}
	b.Rows = sorted
	for i := range b.row {
		b.row[i] = at[b.row[i]]
	}
	return b, nil
}

// Index returns the index of each row of b by its key, for a storage that
// reads the stored rows back by key.
func (b *ReceivedBatch) Index() map[ReceivedKey]int {
	idx := make(map[ReceivedKey]int, len(b.Rows))
	for i := range b.Rows {
		idx[b.Rows[i].Key()] = i
	}
	return idx
}

// Results returns one result per message of the batch, in order, given
// the result of each row (rows[i] is that of b.Rows[i], see
// ReceivedRow.Result). A message that repeats an earlier one of the batch
// is a duplicate of its row, never claimed.
func (b *ReceivedBatch) Results(rows []storage.ReceivedInsert) []storage.ReceivedInsert {
	out := make([]storage.ReceivedInsert, len(b.row))
	for i, j := range b.row {
		if b.first[i] {
			out[i] = rows[j]
		} else {
			out[i] = storage.ReceivedInsert{ID: rows[j].ID}
		}
	}
	return out
}

// InsertReceivedBatch is the frame of a storage's InsertReceivedBatch:
// it prepares msgs with NewReceivedBatch and, unless the batch is empty,
// has store store its rows and set the result of each (res[i], that of
// batch.Rows[i], zero until set: a duplicate not claimed). It returns the
// results of the messages, in order, or store's error classified and in
// context.
func (b *Base) InsertReceivedBatch(msgs []*storage.Message, token int64, fitGroup, fitName Fit,
	store func(batch *ReceivedBatch, res []storage.ReceivedInsert) error) ([]storage.ReceivedInsert, error) {
	batch, err := NewReceivedBatch(msgs, token, fitGroup, fitName)
	if err != nil {
		return nil, b.Wrap(err)
	}
	res := make([]storage.ReceivedInsert, len(batch.Rows))
	if len(batch.Rows) > 0 {
		if err := store(batch, res); err != nil {
			return nil, b.Err(err, "storing %d received messages", len(msgs))
		}
	}
	return batch.Results(res), nil
}

// ReceivedRow is the start of a storage's InsertReceived: it checks the
// lease token and returns the row of m (see NewReceivedRow), or an error
// prefixed with the storage's name.
func (b *Base) ReceivedRow(m *storage.Message, token int64, fitGroup, fitName Fit) (ReceivedRow, error) {
	if err := CheckReceivedToken(token); err != nil {
		return ReceivedRow{}, b.Wrap(err)
	}
	r, err := NewReceivedRow(m, fitGroup, fitName)
	if err != nil {
		return ReceivedRow{}, b.Wrap(err)
	}
	return r, nil
}
