package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gocap/gocap/internal/backoff"
	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/wire"
)

// receiver is the receive side: it consumes each group's topics, stores
// every delivery as a received row claimed by this process, acknowledges
// it, and runs the subscribed handler on the pool of its processor.
type receiver struct {
	e      *Engine
	proc   *processor
	groups map[string][]Subscription

	unstored  unstoredCounts // deliveries that failed to be stored, by message
	consumers consumerStates // the failures of each group's consumer
}

func newReceiver(e *Engine) *receiver {
	r := &receiver{e: e, groups: map[string][]Subscription{}}
	r.proc = newProcessor(storage.Received, &e.cfg, e.cfg.HandlerConcurrency, 1, r.attempt)
	// Each handler call bounds itself (Subscription.Timeout, below the
	// lease); the attempt's own deadline is the lease.
	r.proc.deadline = e.cfg.Lease
	r.proc.attemptTime = func(m *storage.Message) time.Duration {
		if s, ok := r.subscriptionFor(m.Group, m.Name); ok && s.Timeout > 0 {
			return s.Timeout
		}
		return e.cfg.Lease
	}
	r.proc.handOver = r.handOver
	return r
}

// add registers s.
func (r *receiver) add(s Subscription) error {
	for _, o := range r.groups[s.Group] {
		if o.Pattern == s.Pattern {
			return fmt.Errorf("outbox: subscribe: topic %q already has a handler in group %q", s.Pattern, s.Group)
		}
	}
	if s.Concurrency > 0 {
		s.limit = &limiter{max: s.Concurrency, maxWaiting: max(r.e.cfg.HandlerConcurrency, s.Concurrency)}
	}
	r.groups[s.Group] = append(r.groups[s.Group], s)
	return nil
}

// attempt runs the handler of each row: the subscription's Handle, the
// whole chain of its middleware, under the subscription's concurrency
// limit (limit.go).
func (r *receiver) attempt(ctx context.Context, ms []*storage.Message) []error {
	errs := make([]error, len(ms))
	for i, m := range ms {
		s, ok := r.subscriptionFor(m.Group, m.Name)
		switch {
		case m.OrderingKey != "" && m.Headers[wire.UnstorableHeaders] != "":
			errs[i] = unstorableTurn(m)
		case !ok:
			errs[i] = permanent(fmt.Errorf("no handler for topic %q in group %q in this process", m.Name, m.Group))
		case s.limit != nil:
			errs[i] = r.limited(ctx, s, m)
		default:
			errs[i] = s.Handle(ctx, m)
		}
	}
	return errs
}

// Batches of deliveries from a transport that hands them over in batches:
// up to receiveBatch (stored with one statement), gathered for at most
// receiveLinger after the first.
const (
	receiveBatch  = 100
	receiveLinger = 2 * time.Millisecond
)

// consume stores the deliveries of group until ctx ends, and starts the
// handler of each stored message.
func (r *receiver) consume(ctx, work context.Context, group string) {
	subs := r.groups[group]
	patterns := make([]string, len(subs))
	for i, s := range subs {
		patterns[i] = s.Pattern
	}
	log := r.e.log
	retry := backoff.New(100*time.Millisecond, 30*time.Second)
	for ctx.Err() == nil {
		started := time.Now()
		r.consumers.started(group, started)
		var err error
		if br, ok := r.e.cfg.Transport.(transport.BatchReceiver); ok {
			err = br.ConsumeBatch(ctx, group, patterns, receiveBatch, receiveLinger, func(dctx context.Context, ds []transport.Delivery) []error {
				return r.storeBatch(dctx, work, group, ds)
			})
		} else {
			err = r.e.cfg.Transport.Consume(ctx, group, patterns, func(dctx context.Context, d transport.Delivery) error {
				return r.store(dctx, work, group, d)
			})
		}
		if ctx.Err() != nil {
			return
		}
		r.consumers.failed(group, err, time.Now())
		if time.Since(started) > time.Minute {
			retry.Reset() // it ran well for a while: this is a new failure
		}
		d := retry.Next()
		if errors.Is(err, transport.ErrMisconfigured) {
			d = retry.Max
			log.Error("gocap: the broker refuses the consumer's configuration: messages of the group are not received "+
				"until the configuration (or the broker's side) is changed; trying again after a pause",
				"group", group, "topics", patterns, "err", err, "retry_in", d)
		} else {
			log.Error("gocap: consuming failed; consuming again after a pause",
				"group", group, "topics", patterns, "err", err, "retry_in", d)
		}
		if !backoff.Sleep(ctx, d) {
			return
		}
	}
}

// store stores one delivery as a received row claimed by this process and
// starts its handler. It returns an error, so that the broker delivers the
// message again later, only while the storage fails transiently (the
// database is unreachable, a deadlock): a delivery the storage refuses
// (see storeUnstorable), or keeps failing on while other deliveries are
// stored, is stored as a Failed row instead, so that no delivery is handed
// back to the broker for ever.
func (r *receiver) store(ctx, work context.Context, group string, d transport.Delivery) error {
	m := r.receivedMessage(group, d)
	token := ids.Token()
	leaseUntil := time.Now().UTC().Add(r.e.cfg.Lease)
	var res storage.ReceivedInsert
	wctx, cancel := writeContext(ctx)
	defer cancel()
	msgs := []*storage.Message{m}
	err := r.proc.retryStore(wctx, func() error {
		return r.e.InsertWithFreshIDs(msgs, reIDReceived, func() error {
			var err error
			res, err = r.e.store.InsertReceived(wctx, m, token, leaseUntil)
			return err
		})
	})
	if err != nil {
		return r.notStored(ctx, work, m, err)
	}
	r.start(ctx, work, m, res, token, leaseUntil)
	passKeyedMillis(msgs)
	return nil
}

// storeBatch stores deliveries of group with one InsertReceivedBatch, when
// the storage has it, and starts the handler of each stored message; it
// returns one result per delivery, with store's meaning. Should the
// storage refuse the batch for the data of one of its deliveries, they are
// stored one by one, each with its own outcome.
func (r *receiver) storeBatch(ctx, work context.Context, group string, ds []transport.Delivery) []error {
	errs := make([]error, len(ds))
	bi, ok := r.e.store.(storage.ReceivedBatchInserter)
	if !ok || len(ds) == 1 {
		for i, d := range ds {
			errs[i] = r.store(ctx, work, group, d)
		}
		return errs
	}
	msgs := make([]*storage.Message, len(ds))
	for i, d := range ds {
		msgs[i] = r.receivedMessage(group, d)
	}
	token := ids.Token()
	leaseUntil := time.Now().UTC().Add(r.e.cfg.Lease)
	var res []storage.ReceivedInsert
	wctx, cancel := writeContext(ctx)
	defer cancel()
	err := r.proc.retryStore(wctx, func() error {
		return r.e.InsertWithFreshIDs(msgs, reIDReceived, func() error {
			var err error
			res, err = bi.InsertReceivedBatch(wctx, msgs, token, leaseUntil)
			if err == nil && len(res) != len(msgs) {
				err = fmt.Errorf("InsertReceivedBatch returned %d results for %d messages: %w", len(res), len(msgs), storage.ErrPermanent)
			}
			return err
		})
	})
	switch {
	case err != nil && ctx.Err() == nil && errors.Is(err, storage.ErrPermanent):
		r.e.log.Warn("gocap: the storage refused a batch of deliveries; storing them one by one", "group", group,
			"count", len(ds), "err", err)
		for i, d := range ds {
			errs[i] = r.store(ctx, work, group, d)
		}
	case err != nil:
		for i, m := range msgs {
			errs[i] = r.notStored(ctx, work, m, err)
		}
	default:
		for i, m := range msgs {
			r.start(ctx, work, m, res[i], token, leaseUntil)
		}
		passKeyedMillis(msgs)
	}
	return errs
}

// notStored decides what becomes of a delivery the storage did not store:
// handed back to the broker while the error is transient (a bounded number
// of times), else stored as a Failed row (storeUnstorable).
func (r *receiver) notStored(ctx, work context.Context, m *storage.Message, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("storing received message %s (topic %q, group %q): %w", m.MsgID, m.Name, m.Group, err)
	}
	if !errors.Is(err, storage.ErrPermanent) && r.unstored.add(m) < maxTransientStores {
		return fmt.Errorf("storing received message %s (topic %q, group %q); the broker delivers it again: %w",
			m.MsgID, m.Name, m.Group, err)
	}
	r.unstored.forget(m)
	return r.storeUnstorable(ctx, work, m, err)
}

// start runs the handler of a stored delivery that this process claimed:
// a new row, or a Failed duplicate that was reset (its stored content is
// read first). A duplicate that was not claimed is only logged.
func (r *receiver) start(ctx, work context.Context, m *storage.Message, res storage.ReceivedInsert, token int64, leaseUntil time.Time) {
	r.unstored.forget(m)
	if res.Queued {
		r.queued(m, res)
		return
	}
	if !res.Claimed {
		r.e.log.Debug("gocap: duplicate delivery ignored", "msg_id", m.MsgID, "group", m.Group, "topic", m.Name)
		return
	}
	if res.Reset {
		// A Failed duplicate was reset: run the stored row, with its content.
		stored, err := r.e.store.Get(ctx, storage.Received, res.ID)
		if err != nil {
			// The row stays claimed; a claim loop runs it when the lease ends.
			r.e.log.Warn("gocap: reading a requeued duplicate failed; it runs after its lease",
				"id", res.ID, "err", err)
			return
		}
		m = stored
	}
	if r.e.cfg.OnReceived != nil {
		r.e.cfg.OnReceived(m)
	}
	m.LeaseToken, m.LeaseUntil = token, leaseUntil
	if why := r.proc.startClaimed(ctx, work, m); why != "" {
		// The handler did not start (the processor stopped, or the lease
		// ran low while the row waited for a slot): give the lease back,
		// so that the row (and, for a keyed row, every later row of its
		// key) does not wait for the lease to end before a processor
		// handles it.
		r.release(ctx, []*storage.Message{m}, time.Now(), why)
	}
}

// receivedMessage makes the row of a delivery for group, with CAP's
// defaults for what a foreign publisher left out.
func (r *receiver) receivedMessage(group string, d transport.Delivery) *storage.Message {
	id := r.e.ids.Next()
	w := wire.Received(group, d.Topic, d.Headers, func() string { return strconv.FormatInt(id, 10) })
	if w.GeneratedID {
		r.e.log.Warn("gocap: received a message without cap-msg-id; gave it a new id",
			"group", group, "topic", d.Topic, "msg_id", w.MsgID)
	}
	m := &storage.Message{
		ID:      id,
		Kind:    storage.Received,
		MsgID:   w.MsgID,
		Name:    w.Name,
		Group:   group,
		Headers: w.Headers,
		Body:    d.Body,
		Status:  storage.StatusScheduled,
		Added:   time.Now().UTC(),
		Version: r.e.cfg.Version,
		// ordering keys (#18)
		OrderingKey: orderingKey(d.Headers),
	}
	if s, ok := r.subscriptionFor(group, w.Name); ok {
		m.Policy = s.Policy
	}
	return m
}

// maxTransientStores is how many deliveries of one message may fail to be
// stored with a transient error before it is taken as unstorable: a
// storage error misjudged as transient must not hand the message back to
// the broker for ever.
const maxTransientStores = 5

// storeUnstorable stores a delivery that the storage refused as a Failed
// row, visible and requeueable, carrying the reason and as much of the
// delivery as can be stored: an id the storage can hold, the headers
// quoted in wire.UnstorableHeaders, and the body (left out if it is the
// body that cannot be stored), and its ordering key. The text it makes
// up (the quoted headers, why the body was left out, and the reason
// recorded as the row's error) is ASCII, so that a storage that cannot
// hold some characters of the delivery still holds it. Stored as the head
// of its key, it is failed at once; stored behind others of its key, it
// fails at its turn (unstorableTurn). It calls OnFailed for it. It returns an
// error, so the broker delivers the message again, if the storage is
// unreachable; and a transport.Discard error, after logging the delivery,
// if even that row is refused.
func (r *receiver) storeUnstorable(ctx, work context.Context, m *storage.Message, cause error) error {
	quoted := quoteHeaders(m.Headers)
	msgID := storage.StorableMsgID(m.MsgID)
	name := storage.TruncateText(m.Name, 200)
	row := &storage.Message{
		ID:    m.ID,
		Kind:  storage.Received,
		MsgID: msgID,
		Name:  name,
		Group: m.Group,
		Headers: map[string]string{
			wire.MsgID:             msgID,
			wire.MsgName:           name,
			wire.Group:             m.Group,
			wire.UnstorableHeaders: storage.TruncateText(quoted, 64<<10),
		},
		Body:    m.Body,
		Status:  storage.StatusScheduled,
		Added:   m.Added,
		Version: m.Version,
		// The key stays, so that the Failed row holds it (see unstorableTurn).
		OrderingKey: m.OrderingKey,
	}
	token := ids.Token()
	leaseUntil := time.Now().UTC().Add(r.e.cfg.Lease)
	var res storage.ReceivedInsert
	wctx, cancel := writeContext(ctx)
	defer cancel()
	rows := []*storage.Message{row}
	insert := func() error {
		return r.e.InsertWithFreshIDs(rows, reIDReceived, func() error {
			var err error
			res, err = r.e.store.InsertReceived(wctx, row, token, leaseUntil)
			return err
		})
	}
	err := r.proc.retryStore(wctx, insert)
	if err != nil && errors.Is(err, storage.ErrPermanent) && len(row.Body) > 0 {
		row.Headers[wire.UnstorableBody] = fmt.Sprintf("%d bytes, left out: %s", len(row.Body), asciiText(storage.TruncateText(err.Error(), 500)))
		row.Body = nil
		err = r.proc.retryStore(wctx, insert)
	}
	if err == nil {
		passKeyedMillis(rows)
	}
	switch {
	case err != nil && errors.Is(err, storage.ErrPermanent):
		r.e.log.Error("gocap: a delivery could not be stored, not even as Failed; it is discarded",
			"group", m.Group, "topic", m.Name, "headers", quoted, "body", string(m.Body),
			"cause", cause, "err", err)
		return transport.Discard(fmt.Errorf("storing received message %q (group %q) as Failed: %w", msgID, m.Group, err))
	case err != nil:
		return fmt.Errorf("storing unstorable received message %q (group %q) as Failed; the broker delivers it again: %w",
			msgID, m.Group, err)
	case res.Queued:
		// A keyed row behind others of its key: its turn fails it.
		r.e.log.Warn("gocap: a keyed delivery could not be stored; it fails at its turn, holding its key",
			"group", m.Group, "topic", m.Name, "ordering_key", m.OrderingKey, "cause", cause)
		return nil
	case !res.Claimed:
		return nil // stored before, by an earlier delivery of it
	}
	row.ID = res.ID
	row.LeaseToken, row.LeaseUntil = token, leaseUntil
	// Recorded at once with Store.Fail, not through the failer: this runs
	// on the consume path, outside the worker pool whose end closes the
	// failer, and the delivery is acknowledged when this returns.
	r.proc.fail(work, row, storage.Lease{ID: row.ID, Token: token}, storage.Attempt{At: time.Now().UTC()},
		permanent(fmt.Errorf("the delivery could not be stored as received (its original headers are in %s): %w",
			wire.UnstorableHeaders, asciiError{cause})))
	return nil
}

// quoteHeaders is the text of wire.UnstorableHeaders for the headers h:
// one line per header, sorted by key, the key and the value each quoted
// as a Go string literal with every character outside ASCII escaped
// (strconv.QuoteToASCII), so that any storage can hold it — a MySQL
// session in utf8mb3 refuses 4-byte characters, say — and
// strconv.Unquote gives the original text back.
func quoteHeaders(h map[string]string) string {
	var quoted strings.Builder
	for _, k := range slices.Sorted(maps.Keys(h)) {
		fmt.Fprintf(&quoted, "%s: %s\n", strconv.QuoteToASCII(k), strconv.QuoteToASCII(h[k]))
	}
	return quoted.String()
}

// asciiText is s with every character outside printable ASCII escaped as
// in a Go string literal (without the quotes), for text written to a row
// that must be storable whatever the storage's character set.
func asciiText(s string) string {
	q := strconv.QuoteToASCII(s)
	return q[1 : len(q)-1]
}

// asciiError is an error whose text is that of the error it wraps made
// ASCII (asciiText), for the reason recorded on a Failed row that stands
// for a delivery the storage refused.
type asciiError struct{ error }

func (e asciiError) Error() string { return asciiText(e.error.Error()) }
func (e asciiError) Unwrap() error { return e.error }

// permanentError is an engine error that retrying cannot fix.
type permanentError struct{ error }

func (permanentError) Permanent() bool   { return true }
func (e permanentError) Unwrap() error   { return e.error }
func permanent(err error) permanentError { return permanentError{err} }

// unstoredCounts counts, per message, the deliveries that could not be
// stored because of a transient error. It is bounded: past maxTracked
// messages it starts afresh.
type unstoredCounts struct {
	mu sync.Mutex
	n  map[string]int
}

const maxTracked = 10000

// unstoredKey is the message a count is kept for: its id in its group;
// for a delivery whose publisher sent no cap-msg-id, whose id
// receivedMessage made up (each delivery of it gets another), a hash of
// its topic, headers but that id, and body, so that its deliveries are
// counted together too.
func unstoredKey(m *storage.Message) string {
	if m.MsgID != strconv.FormatInt(m.ID, 10) {
		return m.Group + "\x00" + m.MsgID
	}
	h := sha256.New()
	field := func(s string) { fmt.Fprintf(h, "%d:%s", len(s), s) }
	field(m.Name)
	for _, k := range slices.Sorted(maps.Keys(m.Headers)) {
		if k != wire.MsgID {
			field(k)
			field(m.Headers[k])
		}
	}
	h.Write(m.Body)
	return m.Group + "\x00#" + hex.EncodeToString(h.Sum(nil))
}

func (u *unstoredCounts) add(m *storage.Message) int {
	key := unstoredKey(m)
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.n == nil || len(u.n) >= maxTracked {
		u.n = map[string]int{}
	}
	u.n[key]++
	return u.n[key]
}

func (u *unstoredCounts) forget(m *storage.Message) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.n) > 0 {
		delete(u.n, unstoredKey(m))
	}
}
