package storage_test

// The second half of MemStore (example_store_test.go): the reads and the
// dashboard's changes (Get, List, Counts, Histogram, Requeue, Delete),
// the cleaner (DeleteExpired) and the processors' heartbeats. Like the
// first half, it uses the public storage package only.

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/gocap/gocap/storage"
)

// Get returns a copy of one row, or storage.ErrNotFound.
func (s *MemStore) Get(ctx context.Context, kind storage.Kind, id int64) (*storage.Message, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	table, err := s.table(kind)
	if err != nil {
		return nil, err
	}
	m, ok := table[id]
	if !ok {
		return nil, fmt.Errorf("memstore: %s message %d: %w", kind, id, storage.ErrNotFound)
	}
	return clone(m), nil
}

// List returns one page of the rows of f.Kind that match f, newest (highest
// id) first, starting below f.BeforeID when it is set. Filters compare
// with the text as the rows store it: a name or group made valid text, a
// received message id as storage.StorableMsgID makes it. Group filters
// received rows only, and is ignored for published ones. Content is
// matched literally against the body's bytes.
func (s *MemStore) List(ctx context.Context, f storage.Filter) ([]*storage.Message, error) {
	return s.list(ctx, f, nil)
}

// list is List over the committed rows and, when tx is not nil, the rows
// tx inserted and has not committed (see ListPublishedTx).
func (s *MemStore) list(ctx context.Context, f storage.Filter, tx *Tx) ([]*storage.Message, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = defaultListLimit
	}
	name, group, msgID := storage.ValidText(f.Name), storage.ValidText(f.Group), f.MsgID
	if f.Kind == storage.Received {
		msgID = storage.StorableMsgID(f.MsgID)
	}
	match := func(m *storage.Message) bool {
		return (f.Status == "" || m.Status == f.Status) &&
			(f.Name == "" || m.Name == name) &&
			(f.Group == "" || f.Kind != storage.Received || m.Group == group) &&
			(f.MsgID == "" || m.MsgID == msgID) &&
			(f.Content == "" || bytes.Contains(m.Body, []byte(f.Content))) &&
			(f.Version == "" || m.Version == f.Version) &&
			(f.BeforeID <= 0 || m.ID < f.BeforeID)
	}
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	table, err := s.table(f.Kind)
	if err != nil {
		return nil, err
	}
	var page []*storage.Message
	for _, m := range table {
		if match(m) {
			page = append(page, m)
		}
	}
	if tx != nil {
		if tx.done {
			return nil, errTxDone
		}
		for _, m := range tx.pending {
			if match(m) {
				page = append(page, m)
			}
		}
	}
	slices.SortFunc(page, func(a, b *storage.Message) int { return cmp.Compare(b.ID, a.ID) })
	page = page[:min(len(page), limit)]
	for i, m := range page {
		page[i] = clone(m)
	}
	return page, nil
}

// Counts returns the number of rows of kind in each status, every status
// present, zero or not.
func (s *MemStore) Counts(ctx context.Context, kind storage.Kind) (map[storage.Status]int64, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	table, err := s.table(kind)
	if err != nil {
		return nil, err
	}
	counts := make(map[storage.Status]int64, len(storage.Statuses))
	for _, st := range storage.Statuses {
		counts[st] = 0
	}
	for _, m := range table {
		counts[m.Status]++
	}
	return counts, nil
}

// Histogram counts the rows of kind added at or after since by status and
// by time bucket. A row's time is the one its id encodes
// (storage.IDTime), so, like a SQL backend reading its primary key, it
// selects ids from storage.MinIDAt(since) on. A bucket starts at a
// multiple of its width since the Unix epoch; the width is taken in whole
// milliseconds, and must be at least one. Buckets without rows are left
// out; the others come in time order, then in the order of
// storage.Statuses.
func (s *MemStore) Histogram(ctx context.Context, kind storage.Kind, since time.Time, bucket time.Duration) ([]storage.HistogramBucket, error) {
	width := bucket.Milliseconds()
	if width <= 0 {
		return nil, fmt.Errorf("memstore: histogram: bucket %v is shorter than a millisecond", bucket)
	}
	minID := storage.MinIDAt(since)
	type cell struct {
		startMillis int64
		status      storage.Status
	}
	counts := map[cell]int64{}
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	table, err := s.table(kind)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	for _, m := range table {
		if m.ID < minID {
			continue
		}
		// Not time.Truncate: it aligns on the zero time, not the Unix epoch.
		ms := storage.IDTime(m.ID).UnixMilli()
		counts[cell{ms - ms%width, m.Status}]++
	}
	s.mu.Unlock()

	out := make([]storage.HistogramBucket, 0, len(counts))
	for c, n := range counts {
		out = append(out, storage.HistogramBucket{Start: time.UnixMilli(c.startMillis).UTC(), Status: c.status, Count: n})
	}
	slices.SortFunc(out, func(a, b storage.HistogramBucket) int {
		return cmp.Or(a.Start.Compare(b.Start),
			cmp.Compare(slices.Index(storage.Statuses, a.Status), slices.Index(storage.Statuses, b.Status)))
	})
	return out, nil
}

// Requeue makes the given rows Scheduled and due at now, with zero
// retries, no error, no expiry and no lease, keeping their policy and
// history (a Delayed row is thus sent now), except rows in flight (still
// Scheduled under a lease that has not ended at now). It returns how many
// rows it changed; an id given twice counts once.
func (s *MemStore) Requeue(ctx context.Context, kind storage.Kind, ids []int64, now time.Time) (int64, error) {
	now = now.UTC()
	if err := s.lock(ctx); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	table, err := s.table(kind)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, id := range uniq(ids) {
		m := table[id]
		if m == nil || (m.Status == storage.StatusScheduled && leased(m, now)) {
			continue
		}
		m.Status = storage.StatusScheduled
		m.NextAttemptAt = now
		m.Retries = 0
		m.LastError = ""
		m.ExpiresAt = time.Time{}
		m.LeaseToken, m.LeaseUntil = 0, time.Time{}
		n++
	}
	return n, nil
}

// Delete removes the given rows; it returns how many it removed.
func (s *MemStore) Delete(ctx context.Context, kind storage.Kind, ids []int64) (int64, error) {
	if err := s.lock(ctx); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	if _, err := s.table(kind); err != nil {
		return 0, err
	}
	var n int64
	for _, id := range uniq(ids) {
		if s.remove(kind, id) {
			n++
		}
	}
	return n, nil
}

// DeleteExpired removes at most limit rows whose ExpiresAt is set and not
// after now, those that expired first first. limit must be positive.
func (s *MemStore) DeleteExpired(ctx context.Context, kind storage.Kind, now time.Time, limit int) (int64, error) {
	if limit <= 0 {
		return 0, fmt.Errorf("memstore: delete expired: limit %d must be positive", limit)
	}
	if err := s.lock(ctx); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	table, err := s.table(kind)
	if err != nil {
		return 0, err
	}
	var expired []*storage.Message
	for _, m := range table {
		if !m.ExpiresAt.IsZero() && !m.ExpiresAt.After(now) {
			expired = append(expired, m)
		}
	}
	slices.SortFunc(expired, func(a, b *storage.Message) int {
		return cmp.Or(a.ExpiresAt.Compare(b.ExpiresAt), cmp.Compare(a.ID, b.ID))
	})
	expired = expired[:min(len(expired), limit)]
	for _, m := range expired {
		s.remove(kind, m.ID)
	}
	return int64(len(expired)), nil
}

// remove deletes row id of kind, and its entry in the received table's
// unique index; it reports whether the row existed. s.mu is held.
func (s *MemStore) remove(kind storage.Kind, id int64) bool {
	m, ok := s.rows[kind][id]
	if !ok {
		return false
	}
	delete(s.rows[kind], id)
	if kind == storage.Received {
		delete(s.received, receivedKey{msgID: m.MsgID, group: m.Group})
	}
	return true
}

// Heartbeat records that inst is alive at inst.LastSeen. The first
// heartbeat of an id stores the whole Instance; later ones move LastSeen.
func (s *MemStore) Heartbeat(ctx context.Context, inst storage.Instance) error {
	inst.ID, inst.Hostname = storage.ValidText(inst.ID), storage.ValidText(inst.Hostname)
	inst.Started, inst.LastSeen = inst.Started.UTC(), inst.LastSeen.UTC()
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if old, ok := s.instances[inst.ID]; ok {
		old.LastSeen = inst.LastSeen
		inst = old
	}
	s.instances[inst.ID] = inst
	return nil
}

// Instances lists the processors whose last heartbeat is after since,
// oldest started first (then by id).
func (s *MemStore) Instances(ctx context.Context, since time.Time) ([]storage.Instance, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	var out []storage.Instance
	for _, inst := range s.instances {
		if inst.LastSeen.After(since) {
			out = append(out, inst)
		}
	}
	slices.SortFunc(out, func(a, b storage.Instance) int {
		return cmp.Or(a.Started.Compare(b.Started), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

// RemoveInstance deletes the heartbeat of processor id (given as it was
// to Heartbeat), and, when olderThan is not zero, those last seen before
// olderThan.
func (s *MemStore) RemoveInstance(ctx context.Context, id string, olderThan time.Time) error {
	id = storage.ValidText(id)
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	maps.DeleteFunc(s.instances, func(key string, inst storage.Instance) bool {
		return key == id || (!olderThan.IsZero() && inst.LastSeen.Before(olderThan))
	})
	return nil
}

// clone returns a copy of m that shares nothing with it.
func clone(m *storage.Message) *storage.Message {
	c := *m
	c.Headers = maps.Clone(m.Headers)
	c.Body = bytes.Clone(m.Body)
	c.Attempts = slices.Clone(m.Attempts)
	return &c
}

// uniq returns ids without repetitions, in their first order.
func uniq(ids []int64) []int64 {
	seen := make(map[int64]bool, len(ids))
	out := make([]int64, 0, len(ids))
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}
