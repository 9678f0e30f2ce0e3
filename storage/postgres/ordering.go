package postgres

import (
	"context"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/gocap/gocap/storage"
)

// Ordering keys (#18): the claim's second check of the keys of the rows
// it leased, under their locks (see keyLock in queries.go).

// unclaim checks the keyed rows of msgs, just claimed, again under the
// locks of their keys (see keyLock), in one round trip: those of a key
// with another row in flight lose their lease, and msgs without them is
// returned. If it fails, the rows stay leased until their lease ends.
func (d *Driver) unclaim(ctx context.Context, t *tableQueries, msgs []*storage.Message, req storage.ClaimRequest) ([]*storage.Message, error) {
	var keyed []int64
	var groups, versions, keys []string
	for _, m := range msgs {
		if m.OrderingKey != "" {
			keyed = append(keyed, m.ID)
			groups, versions, keys = append(groups, m.Group), append(versions, m.Version), append(keys, m.OrderingKey)
		}
	}
	if len(keyed) == 0 {
		return msgs, nil
	}
	var dropped []int64
	var b pgx.Batch
	if d.book.async {
		b.Queue(setAsyncCommit) // part of Claim's bookkeeping
	}
	b.Queue(t.lockKeys, groups, versions, keys)
	b.Queue(t.unclaim, keyed, req.Token, req.Now.UTC()).Query(func(rows pgx.Rows) error {
		var err error
		dropped, err = pgx.CollectRows(rows, pgx.RowTo[int64])
		return err
	})
	if err := d.pool.SendBatch(ctx, &b).Close(); err != nil {
		return nil, err
	}
	if len(dropped) == 0 {
		return msgs, nil
	}
	return slices.DeleteFunc(msgs, func(m *storage.Message) bool { return slices.Contains(dropped, m.ID) }), nil
}
