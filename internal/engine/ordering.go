package engine

import (
	"fmt"
	"time"

	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/wire"
)

// Ordering keys (#18) on the receive side: a delivery carrying
// wire.OrderingKey is stored with that key. The storage stores it leased
// to this process (ReceivedInsert.Claimed) when it is the head of its key
// — no row of its key, group and version stored that is not Succeeded —
// and it is handed straight to a worker, as a row without a key is;
// otherwise it is stored for a claim (Queued, not leased; see
// storage.Store.InsertReceived), and the claim rule of the storage hands
// the key's rows to one handler at a time, in the order they were
// stored, in every process. Rows get their ids in delivery order
// (receivedMessage), also within a batch, and across processes
// (passKeyedMillis).

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

// unstorableTurn is the outcome of the turn of a keyed row that stands
// for a delivery the storage refused (storeUnstorable): it fails for
// good, so that the Failed row holds its key under the block policy as
// the message would have, and no handler runs on what is left of it. A
// row stored as the head of its key is failed at once by
// storeUnstorable; one stored behind others of its key reaches this when
// its turn comes, and again after a requeue (delete it to release the
// key). Its text is ASCII, as storeUnstorable's.
func unstorableTurn(m *storage.Message) error {
	return permanent(fmt.Errorf("the delivery could not be stored as received (its original headers are in %s); ordering key %+q",
		wire.UnstorableHeaders, m.OrderingKey))
}

// passKeyedMillis returns once the millisecond of every keyed row of msgs
// (their ids' time) is over, so that a key's next delivery, which the
// broker hands over only after these are acknowledged — to this consumer
// or, after a handover, to another one — gets a larger id. A key's order
// is its rows' id order, and the ids of two processes made in one
// millisecond are ordered by their snowflake nodes, not by time: without
// this wait, a key's next message stored by another process within the
// millisecond of its predecessor could take the smaller id and be handled
// first. The wait is under a millisecond, and only when the store took
// less than that. Across hosts it holds as far as their clocks agree.
func passKeyedMillis(msgs []*storage.Message) {
	var last int64
	for _, m := range msgs {
		if m.OrderingKey != "" {
			last = max(last, storage.IDMillis(m.ID))
		}
	}
	if last == 0 {
		return
	}
	if wait := time.Until(time.UnixMilli(last + 1)); wait > 0 {
		time.Sleep(wait)
	}
}
