package engine

import (
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/wire"
)

// Ordering keys (#18) on the receive side: a delivery carrying
// wire.OrderingKey is stored with that key, for a claim (not leased to
// this process; see storage.Store.InsertReceived), so that the claim rule
// of the storage hands the key's rows to one handler at a time, in the
// order they were stored, in every process. Rows get their ids in
// delivery order (receivedMessage), also within a batch.

// orderingKey returns the ordering key of a delivery's headers, made
// storable: valid UTF-8 of at most storage.MaxOrderingKeyBytes, so that
// every delivery of one key gets the same stored key. Empty for none.
func orderingKey(h map[string]string) string {
	k := h[wire.OrderingKey]
	if k == "" {
		return ""
	}
	return storage.TruncateText(storage.ValidText(k), storage.MaxOrderingKeyBytes)
}

// queued handles a delivery stored for a claim: the claim loop is woken
// to take it (or the key's head) at once.
func (r *receiver) queued(m *storage.Message, res storage.ReceivedInsert) {
	if r.e.cfg.OnReceived != nil {
		r.e.cfg.OnReceived(m)
	}
	r.e.log.Debug("gocap: keyed delivery stored for its turn", "msg_id", m.MsgID, "group", m.Group,
		"ordering_key", m.OrderingKey, "reset", res.Reset)
	r.proc.Wake()
}
