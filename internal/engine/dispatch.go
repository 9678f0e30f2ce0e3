package engine

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/transport"
)

// maxSendBatch bounds the rows of one batch send: large enough that a
// batch amortizes its goroutine, deadline and confirmation wait, small
// enough that a claim of ClaimBatch rows is spread over several batches
// running at once.
const maxSendBatch = 100

// dispatcher is the publish side: it sends claimed published rows over
// the transport, pauses while the transport cannot reach its broker, and
// polls fast for a while after a commit notification.
type dispatcher struct {
	e      *Engine
	proc   *processor
	send   SendFunc
	outage outage

	// fastPoll, if set, is the poll interval for a while after a
	// notification: notifications are coalesced (see notifier), and a
	// commit close after a notified one is found by this poll.
	fastPoll   time.Duration
	notifiedAt atomic.Int64 // the last notification, in Unix nanoseconds
}

func newDispatcher(e *Engine) *dispatcher {
	d := &dispatcher{e: e}
	tr := e.cfg.Transport
	base, batch := sendEach(tr), 1
	if bs, ok := tr.(transport.BatchSender); ok {
		base, batch = sendBatch(bs), maxSendBatch
	}
	d.send = chain(base, append([]func(SendFunc) SendFunc{recoverSend}, e.cfg.SendMiddleware...)...)
	d.proc = newProcessor(storage.Published, &e.cfg, e.cfg.SendConcurrency, batch, d.attempt)
	d.proc.pause = d.outage.wait
	if _, ok := e.store.(storage.Listener); ok && e.cfg.NotifyInterval > 0 {
		d.fastPoll = e.cfg.NotifyInterval
		d.proc.pollWait = d.pollWait
		d.proc.claimed = d.claimed
	}
	return d
}

// sendEach sends rows one by one, for transports without batches.
func sendEach(s transport.Sender) SendFunc {
	return func(ctx context.Context, ms []*storage.Message) []error {
		errs := make([]error, len(ms))
		for i, m := range ms {
			errs[i] = s.Send(ctx, m.Name, transport.Message{Headers: m.Headers, Body: m.Body})
		}
		return errs
	}
}

// sendBatch sends rows together, for transports that take batches.
func sendBatch(bs transport.BatchSender) SendFunc {
	return func(ctx context.Context, ms []*storage.Message) []error {
		out := make([]transport.Outgoing, len(ms))
		for i, m := range ms {
			out[i] = transport.Outgoing{Topic: m.Name, Message: transport.Message{Headers: m.Headers, Body: m.Body}}
		}
		return bs.SendBatch(ctx, out)
	}
}

// busyRetry is how long after a send the transport refused as busy
// (transport.ErrBusy) its row is due again.
const busyRetry = time.Second

// attempt sends ms. A send that failed with transport.ErrUnavailable did
// not reach the broker: it is no attempt, so its row's lease is released
// without counting it, and dispatch pauses until a probe finds the
// transport back. A send that failed with transport.ErrBusy did not
// leave the process either: its row's lease is released without counting
// it, due again after busyRetry, and nothing pauses.
func (d *dispatcher) attempt(ctx context.Context, ms []*storage.Message) []error {
	errs := d.send(ctx, ms)
	if len(errs) != len(ms) {
		return errs // the processor reports the mismatch
	}
	var (
		notSent, busy        []storage.Lease
		unavailable, busyErr error
		reached              bool
	)
	for i, err := range errs {
		switch {
		case err != nil && errors.Is(err, transport.ErrUnavailable):
			notSent = append(notSent, storage.Lease{ID: ms[i].ID, Token: ms[i].LeaseToken})
			unavailable = err
			errs[i] = errReleased
		case err != nil && errors.Is(err, transport.ErrBusy):
			busy = append(busy, storage.Lease{ID: ms[i].ID, Token: ms[i].LeaseToken})
			busyErr = err
			errs[i] = errReleased
		default:
			reached = true
		}
	}
	if len(busy) > 0 {
		d.releaseBusy(context.WithoutCancel(ctx), busy, busyErr)
	}
	log := d.proc.log
	if reached {
		if lasted, ended := d.outage.end(); ended {
			log.Info("gocap: the transport reaches its broker again; dispatch resumed", "outage", lasted.Round(time.Millisecond))
			d.proc.Wake()
		}
	}
	if len(notSent) > 0 {
		pause, first := d.outage.begin()
		if first {
			log.Warn("gocap: the transport cannot reach its broker; dispatch paused, attempts are not counted",
				"probe_in", pause, "err", unavailable)
		}
		d.proc.release(context.WithoutCancel(ctx), notSent, time.Now(), unavailable)
		// The released rows are due at once: the claim loop, which may be
		// asleep until its next poll, wakes to wait for the probe instead.
		d.proc.dueAt(time.Now().Add(pause))
	}
	return errs
}

// releaseBusy gives back the leases of rows whose sends the transport
// refused as busy, without counting an attempt: they are due again after
// busyRetry, and the claim loop wakes then.
func (d *dispatcher) releaseBusy(ctx context.Context, leases []storage.Lease, cause error) {
	at := time.Now().Add(busyRetry)
	if d.proc.release(ctx, leases, at, cause) {
		d.proc.log.Debug("gocap: the transport refused sends as busy; released, not counted as attempts",
			"count", len(leases), "retry_in", busyRetry, "err", cause)
		d.proc.dueAt(at)
	}
}

// fastPollWindow is how long the claim loop polls every fastPoll after a
// notification: long enough to cover the commits coalesced into it.
func (d *dispatcher) fastPollWindow() time.Duration { return max(time.Second, 20*d.fastPoll) }

// notified reports a notification from the storage: rows were committed.
// The claim loop looks for due rows now, and every fastPoll for a while.
func (d *dispatcher) notified() {
	d.notifiedAt.Store(time.Now().UnixNano())
	d.proc.Wake()
}

// pollingFast reports whether the claim loop is running and polls every
// fastPoll for a good while yet, so that a row committed now is claimed
// within fastPoll without a notification. Half the window is kept as a
// margin: a publish near its end notifies, which renews it.
func (d *dispatcher) pollingFast() bool {
	return d.fastPoll > 0 && d.proc.claiming.Load() &&
		time.Since(time.Unix(0, d.notifiedAt.Load())) < d.fastPollWindow()/2
}

// claimed extends the fast polling while claims keep finding rows: under a
// steady load, publishes then need no notification at all.
func (d *dispatcher) claimed(n int) {
	if n > 0 && time.Since(time.Unix(0, d.notifiedAt.Load())) < d.fastPollWindow() {
		d.notifiedAt.Store(time.Now().UnixNano())
	}
}

func (d *dispatcher) pollWait() time.Duration {
	wait := d.e.cfg.PollInterval
	if time.Since(time.Unix(0, d.notifiedAt.Load())) < d.fastPollWindow() {
		wait = min(wait, d.fastPoll)
	}
	return wait
}
