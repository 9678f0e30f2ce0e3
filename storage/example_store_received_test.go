package storage_test

// MemStore's inserts of received messages: InsertReceived, and
// InsertReceivedBatch, the optional storage.ReceivedBatchInserter.

import (
	"bytes"
	"context"
	"errors"
	"time"

	"github.com/gocap/gocap/storage"
)

// MemStore stores batches of received messages under one lock.
var _ storage.ReceivedBatchInserter = (*MemStore)(nil)

// InsertReceived stores a received message as Scheduled, due at m.Added
// and claimed under (token, leaseUntil), with m.Policy, unless a row with
// the same stored message id and group exists: a Failed one is reset and
// claimed (its content, policy and history stay), any other is left
// alone. It is a batch of one.
func (s *MemStore) InsertReceived(ctx context.Context, m *storage.Message, token int64, leaseUntil time.Time) (storage.ReceivedInsert, error) {
	res, err := s.InsertReceivedBatch(ctx, []*storage.Message{m}, token, leaseUntil)
	if err != nil {
		return storage.ReceivedInsert{}, err
	}
	return res[0], nil
}

// InsertReceivedBatch stores msgs as InsertReceived stores each one, all
// under the lease (token, leaseUntil) and the store's lock, so that the
// batch is atomic: its checks pass before anything is stored. A message
// whose stored id and group repeat an earlier one of the batch is a
// duplicate of that one's row.
func (s *MemStore) InsertReceivedBatch(ctx context.Context, msgs []*storage.Message, token int64, leaseUntil time.Time) ([]storage.ReceivedInsert, error) {
	if token == 0 {
		// A zero LeaseToken means "unclaimed" (storage.Message), so it
		// cannot be the token of a claim.
		return nil, errors.New("memstore: insert received: token must be non-zero")
	}
	if err := checkVersions(msgs); err != nil {
		return nil, err
	}
	keys := make([]receivedKey, len(msgs))
	for i, m := range msgs {
		keys[i] = receivedKey{msgID: storage.StorableMsgID(m.MsgID), group: storage.ValidText(m.Group)}
	}
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	// The rows to insert: the first message of each key not stored yet. A
	// keyed row is stored claimed only as the head of its sequence: none
	// of its rows stored but Succeeded ones, and the smallest id of the
	// batch's rows of it; the others are stored for a claim.
	busy := unfinished(s.rows[storage.Received])
	var fresh []*storage.Message
	isNew := map[receivedKey]bool{}
	head := map[sequence]*storage.Message{}
	for i, m := range msgs {
		if _, ok := s.received[keys[i]]; !ok && !isNew[keys[i]] {
			isNew[keys[i]] = true
			row := newReceivedRow(m, keys[i], token, leaseUntil)
			fresh = append(fresh, row)
			if row.OrderingKey != "" && !busy[orderKey(row)] {
				if h := head[orderKey(row)]; h == nil || row.ID < h.ID {
					head[orderKey(row)] = row
				}
			}
		}
	}
	for _, row := range fresh {
		if row.OrderingKey != "" && head[orderKey(row)] == row {
			row.LeaseUntil = leaseUntil.UTC()
		}
	}
	if err := s.checkNewIDs(storage.Received, fresh); err != nil {
		return nil, err
	}
	for _, row := range fresh {
		s.rows[storage.Received][row.ID] = row
		s.received[receivedKey{msgID: row.MsgID, group: row.Group}] = row.ID
	}
	out := make([]storage.ReceivedInsert, len(msgs))
	done := map[receivedKey]bool{} // the keys an earlier message of the batch stored
	for i, m := range msgs {
		id := s.received[keys[i]]
		switch {
		case done[keys[i]]:
			out[i] = storage.ReceivedInsert{ID: id}
		case isNew[keys[i]] && s.rows[storage.Received][id].LeaseUntil.IsZero():
			out[i] = storage.ReceivedInsert{ID: id, Queued: true} // stored for a claim
		case isNew[keys[i]]:
			out[i] = storage.ReceivedInsert{ID: id, Claimed: true}
		default:
			out[i] = s.redelivered(id, m, token, leaseUntil)
		}
		done[keys[i]] = true
	}
	return out, nil
}

// newReceivedRow returns the row to store for m, stored under key and
// claimed under (token, leaseUntil): a private copy, with the text rules
// applied; a keyed row unleased (InsertReceivedBatch leases the head of
// its key).
func newReceivedRow(m *storage.Message, key receivedKey, token int64, leaseUntil time.Time) *storage.Message {
	return &storage.Message{
		ID:            m.ID,
		Kind:          storage.Received,
		MsgID:         key.msgID,
		Name:          storage.ValidText(m.Name),
		Group:         key.group,
		Headers:       validHeaders(m.Headers),
		Body:          bytes.Clone(m.Body),
		Status:        storage.StatusScheduled,
		Added:         m.Added.UTC(),
		NextAttemptAt: m.Added.UTC(),
		LeaseToken:    token,
		LeaseUntil:    receivedLease(m, leaseUntil),
		Policy:        storage.ValidText(m.Policy),
		OrderingKey:   storage.ValidText(m.OrderingKey),
		Version:       m.Version,
	}
}

// receivedLease is the LeaseUntil of a received row of m stored under a
// lease until leaseUntil: none for a row with an ordering key, which is
// stored for a claim unless it is the head of its key.
func receivedLease(m *storage.Message, leaseUntil time.Time) time.Time {
	if m.OrderingKey != "" {
		return time.Time{}
	}
	return leaseUntil.UTC()
}

// redelivered handles m, a copy of the stored row id: a Failed row is
// reset and claimed, any other is left alone. s.mu is held.
func (s *MemStore) redelivered(id int64, m *storage.Message, token int64, leaseUntil time.Time) storage.ReceivedInsert {
	row := s.rows[storage.Received][id]
	if row.Status != storage.StatusFailed {
		return storage.ReceivedInsert{ID: id}
	}
	// A redelivery runs a Failed message again, as a requeue does, but
	// under the caller's lease.
	row.Status = storage.StatusScheduled
	row.Retries = 0
	row.LastError = ""
	row.ExpiresAt = time.Time{}
	row.NextAttemptAt = m.Added.UTC()
	row.LeaseToken, row.LeaseUntil = token, receivedLease(row, leaseUntil)
	if row.OrderingKey != "" {
		return storage.ReceivedInsert{ID: id, Queued: true, Reset: true}
	}
	return storage.ReceivedInsert{ID: id, Claimed: true, Reset: true}
}
