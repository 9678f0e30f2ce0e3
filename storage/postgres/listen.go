package postgres

import (
	"context"
	"fmt"
)

// Listen calls notify whenever a transaction that published messages
// with InsertOptions.Notify commits, and after a requeue, until ctx ends
// (see storage.Listener). It holds one connection of the pool while it
// runs.
func (d *Driver) Listen(ctx context.Context, notify func()) error {
	conn, err := d.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("postgres: listen: acquiring a connection: %w", classify(err))
	}
	defer func() {
		// The connection has a LISTEN registered: do not return it to the pool.
		conn.Hijack().Close(context.Background())
	}()
	if _, err := conn.Exec(ctx, d.q.listen); err != nil {
		return fmt.Errorf("postgres: listen on %q: %w", d.channel, classify(err))
	}
	for {
		if _, err := conn.Conn().WaitForNotification(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("postgres: waiting for notifications on %q: %w", d.channel, classify(err))
		}
		notify()
	}
}
