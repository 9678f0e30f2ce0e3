package storage_test

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/gocap/gocap/storage"
)

var _ storage.KeyInspector = (*MemStore)(nil)

// sequence names the ordered sequence of a keyed row: its group, version
// and key.
type sequence struct{ group, version, key string }

func orderKey(m *storage.Message) sequence { return sequence{m.Group, m.Version, m.OrderingKey} }

// holdsKey reports whether m, a keyed row, holds its key against the rows
// after it: Scheduled or Delayed, or Failed when failedHolds.
func holdsKey(m *storage.Message, failedHolds bool) bool {
	return pending(m) || (failedHolds && m.Status == storage.StatusFailed)
}

// keyHeads returns, for each ordering key of table, the smallest id of
// its rows that hold it: a pending keyed row is due, as far as its key
// goes, only if it is that row (storage's "Ordering keys").
func keyHeads(table map[int64]*storage.Message, failedHolds bool) map[sequence]int64 {
	heads := map[sequence]int64{}
	for _, m := range table {
		if m.OrderingKey == "" || !holdsKey(m, failedHolds) {
			continue
		}
		if h, ok := heads[orderKey(m)]; !ok || m.ID < h {
			heads[orderKey(m)] = m.ID
		}
	}
	return heads
}

// inFlight returns the sequences of table that have a row in flight at
// now: Scheduled under a lease that ends after now. A keyed row is due
// only if its sequence has none (storage's "Ordering keys", rule b).
func inFlight(table map[int64]*storage.Message, now time.Time) map[sequence]bool {
	busy := map[sequence]bool{}
	for _, m := range table {
		if m.OrderingKey != "" && m.Status == storage.StatusScheduled && leased(m, now) {
			busy[orderKey(m)] = true
		}
	}
	return busy
}

// unfinished returns the sequences of table that have a row that is not
// Succeeded: a received keyed row is stored as the head of its key, and
// claimed, only if its sequence has none (Store.InsertReceived).
func unfinished(table map[int64]*storage.Message) map[sequence]bool {
	out := map[sequence]bool{}
	for _, m := range table {
		if m.OrderingKey != "" && m.Status != storage.StatusSucceeded {
			out[orderKey(m)] = true
		}
	}
	return out
}

// BlockedKeys lists the keys whose first row that is not Succeeded is
// Failed, with the pending rows after it, by the head's id.
func (s *MemStore) BlockedKeys(ctx context.Context, kind storage.Kind, limit int) ([]storage.BlockedKey, error) {
	if limit < 1 {
		limit = 50
	}
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	table, err := s.table(kind)
	if err != nil {
		return nil, err
	}
	heads := map[sequence]*storage.Message{}
	for _, m := range table {
		if m.OrderingKey == "" || m.Status == storage.StatusSucceeded {
			continue
		}
		if h, ok := heads[orderKey(m)]; !ok || m.ID < h.ID {
			heads[orderKey(m)] = m
		}
	}
	var out []storage.BlockedKey
	for k, h := range heads {
		if h.Status != storage.StatusFailed {
			continue
		}
		b := storage.BlockedKey{Group: k.group, Version: k.version, OrderingKey: k.key, Head: clone(h)}
		for _, m := range table {
			if orderKey(m) == k && m.ID > h.ID && pending(m) {
				b.Waiting++
			}
		}
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b storage.BlockedKey) int { return cmp.Compare(a.Head.ID, b.Head.ID) })
	return out[:min(len(out), limit)], nil
}
