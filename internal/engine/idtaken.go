package engine

import (
	"errors"

	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/storage"
)

// maxIDRenewals bounds how many times one insert is tried again with new
// ids after the storage found an id of its messages taken. One renewal
// moves the generator to a random node of 1024; the bound stops a storage
// that misreports ErrIDTaken from looping.
const maxIDRenewals = 3

// InsertWithFreshIDs runs insert, which stores msgs, and while the storage
// reports an id of theirs taken by another message's row
// (storage.ErrIDTaken: another live process makes ids on the same
// snowflake node, at the same millisecond), moves the id generator off
// that node, gives every message a new id with reID, and runs insert
// again, at most maxIDRenewals times. It returns insert's last error.
//
// Such a collision stores nothing (the storage contract), so no message
// is lost or stored twice, and Publish does not fail for it.
func (e *Engine) InsertWithFreshIDs(msgs []*storage.Message, reID func(m *storage.Message, id int64), insert func() error) error {
	err := insert()
	for range maxIDRenewals {
		if !errors.Is(err, storage.ErrIDTaken) {
			return err
		}
		for _, m := range msgs {
			reID(m, e.renewID(m.ID))
		}
		err = insert()
	}
	return err
}

// renewID returns a new id for a message whose id taken was found taken,
// after moving the generator off the node that made taken, if it is still
// on it.
func (e *Engine) renewID(taken int64) int64 {
	collided := ids.NodeOf(taken)
	if node, moved := e.ids.Renew(collided); moved {
		e.log.Warn("gocap: another live process makes message ids on this process's snowflake node; "+
			"moved to a random node. Give every process of a database a distinct Options.NodeID",
			"node", collided, "new_node", node, "taken_id", taken)
	}
	return e.ids.Next()
}

// reIDReceived gives a received row a new id; its message id (cap-msg-id,
// the de-duplication key) stays what the delivery carried or was given.
func reIDReceived(m *storage.Message, id int64) { m.ID = id }
