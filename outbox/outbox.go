package outbox

import (
	"context"
	"errors"

	"github.com/gocap/gocap/internal/engine"
	"github.com/gocap/gocap/internal/telemetry"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/transport"
)

// Outbox publishes messages in the application's transactions of type TTx
// and runs the processor that sends them, receives messages for
// subscribers, retries failures and cleans expired rows.
//
// Create one per process with [New], register subscribers with [Subscribe],
// then call Run. Publish may be called from any goroutine, before, during
// and after Run.
type Outbox[TTx any] struct {
	driver storage.Driver[TTx]
	tr     transport.Transport
	opts   Options
	e      *engine.Engine
	tel    *telemetry.Telemetry
}

// New returns an outbox that stores messages with driver and moves them
// over tr. It does not start processing: call Run.
func New[TTx any](driver storage.Driver[TTx], tr transport.Transport, opts Options) (*Outbox[TTx], error) {
	if driver == nil {
		return nil, errors.New("outbox: New: storage driver is nil")
	}
	if tr == nil {
		return nil, errors.New("outbox: New: transport is nil")
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	tel, err := opts.telemetry(driver, tr)
	if err != nil {
		return nil, err
	}
	e, err := engine.New(opts.engineConfig(driver, tr, tel))
	if err != nil {
		return nil, errors.Join(err, tel.Close())
	}
	return &Outbox[TTx]{driver: driver, opts: opts, e: e, tr: tr, tel: tel}, nil
}

// Run processes messages until ctx ends or Close is called: it sends
// committed published messages, consumes the subscribed topics into the
// received table and runs their handlers, retries failures, cleans expired
// rows and records a heartbeat. When ctx ends it stops claiming and
// consuming, waits up to ShutdownTimeout for attempts in flight and records
// their outcomes; an attempt still running after that is cancelled, not
// counted, and its row's lease given back, so that it is attempted again
// (by another process, or after the restart). Run returns nil after a
// clean stop, and ErrRunning or ErrClosed if it cannot start.
//
// Several processes may Run against one database at once: every row is
// worked on by one of them at a time.
func (o *Outbox[TTx]) Run(ctx context.Context) error { return o.e.Run(ctx) }

// Close stops Run, if it is running, waits for it to return, and makes
// later Publish calls fail with ErrClosed; it unregisters the outbox's
// observable gauges from the MeterProvider. It does not close the storage
// or the transport, which the application owns.
func (o *Outbox[TTx]) Close() error {
	return errors.Join(o.e.Close(), o.tel.Close())
}

// Store returns the storage the outbox uses, for the dashboard and for
// tools that inspect or repair messages.
func (o *Outbox[TTx]) Store() storage.Store { return o.driver }

// Wake tells this process's processor that rows of kind became due (after a
// commit on a storage without notifications, or a requeue), so it does not
// wait for its next poll.
func (o *Outbox[TTx]) Wake(kind storage.Kind) { o.e.Wake(kind) }
