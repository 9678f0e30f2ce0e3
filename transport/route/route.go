// Package route combines transports into one, by topic: an application
// sends some topics over HTTP (transport/webhook) and others over
// RabbitMQ or Kafka from one outbox — one table, one processor, one retry
// policy and dashboard for all of them.
//
//	wh, _ := webhook.New(webhook.Config{Routes: ...})
//	rabbit, _ := rabbitmq.New(rabbitmq.Config{URL: url})
//	tr, _ := route.New(route.Rule{Pattern: "merchant.#", Transport: wh}, route.Default(rabbit))
//	ob, _ := outbox.New(store, tr, outbox.Options{})
//
// A message goes to the transport of the first [Rule] whose Pattern
// matches its topic ('*' one word, '#' any number of words), else to the
// [Default] transport; a topic neither matches fails permanently.
// Batches (transport.BatchSender) are split by destination: each part goes
// to its transport's SendBatch if it has one, else to concurrent Send
// calls, and the results are merged in the batch's order. A message to a
// slow HTTP endpoint therefore does not delay the sending of the others in
// its batch; the batch's results are recorded once its slowest send ends,
// which the webhook transport bounds by its timeout. Transports are told
// apart by identity: use pointer values (as every transport of this module
// is).
//
// Subscriptions (Consume, ConsumeBatch) go to the Default transport, the
// one that receives; a webhook transport only sends.
package route

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/gocap/gocap/internal/topic"
	"github.com/gocap/gocap/transport"
)

// Rule sends the topics matching Pattern over Transport.
type Rule struct {
	// Pattern is a topic pattern ('*' one word, '#' any number).
	Pattern string
	// Transport sends the matching topics.
	Transport transport.Transport
}

// Option is a [Rule] or a [Default]: an argument of [New].
type Option interface{ apply(*Router) error }

func (r Rule) apply(rt *Router) error {
	if err := topic.Validate(r.Pattern); err != nil {
		return fmt.Errorf("route: rule %q: %w", r.Pattern, err)
	}
	if r.Transport == nil {
		return fmt.Errorf("route: rule %q: the transport is nil", r.Pattern)
	}
	rt.rules = append(rt.rules, r)
	return nil
}

type defaultOption struct{ t transport.Transport }

func (d defaultOption) apply(rt *Router) error {
	if d.t == nil {
		return errors.New("route: Default: the transport is nil")
	}
	if rt.def != nil {
		return errors.New("route: Default given twice")
	}
	rt.def = d.t
	return nil
}

// Default sends the topics no rule matches over t, and receives: the
// subscriptions of the outbox consume from t.
func Default(t transport.Transport) Option { return defaultOption{t} }

// Router is a transport.Transport that sends each topic over the
// transport its rules give; see the package documentation.
type Router struct {
	rules []Rule
	def   transport.Transport
}

var (
	_ transport.Transport     = (*Router)(nil)
	_ transport.BatchSender   = (*Router)(nil)
	_ transport.BatchReceiver = (*Router)(nil)
)

// ErrNoReceiver is returned by Consume and ConsumeBatch of a Router
// without a Default transport.
var ErrNoReceiver = errors.New("route: no Default transport to receive from")

// New returns a Router of rules, in order, and a default.
func New(opts ...Option) (*Router, error) {
	rt := &Router{}
	for _, o := range opts {
		if o == nil {
			return nil, errors.New("route: New: a nil option")
		}
		if err := o.apply(rt); err != nil {
			return nil, err
		}
	}
	if len(rt.rules) == 0 && rt.def == nil {
		return nil, errors.New("route: New: no rule and no Default")
	}
	return rt, nil
}

// noRouteError is the permanent error of a topic nothing sends.
type noRouteError struct{ topic string }

func (e noRouteError) Error() string {
	return fmt.Sprintf("route: no rule matches topic %q and there is no Default transport", e.topic)
}

// Permanent reports true: the processor fails such a message at once.
func (e noRouteError) Permanent() bool { return true }

// For returns the transport that sends topicName, or nil.
func (rt *Router) For(topicName string) transport.Transport {
	for _, r := range rt.rules {
		if topic.Match(r.Pattern, topicName) {
			return r.Transport
		}
	}
	return rt.def
}

// Send sends msg over the transport of topicName.
func (rt *Router) Send(ctx context.Context, topicName string, msg transport.Message) error {
	t := rt.For(topicName)
	if t == nil {
		return noRouteError{topicName}
	}
	return t.Send(ctx, topicName, msg)
}

// SendBatch splits msgs by transport, sends the parts at once — each as a
// batch if its transport takes batches, else message by message, all
// concurrently — and returns the results in msgs' order.
func (rt *Router) SendBatch(ctx context.Context, msgs []transport.Outgoing) []error {
	errs := make([]error, len(msgs))
	type part struct {
		t   transport.Transport
		idx []int
	}
	var parts []*part
	for i, m := range msgs {
		t := rt.For(m.Topic)
		if t == nil {
			errs[i] = noRouteError{m.Topic}
			continue
		}
		j := slices.IndexFunc(parts, func(p *part) bool { return p.t == t })
		if j < 0 {
			parts = append(parts, &part{t: t})
			j = len(parts) - 1
		}
		parts[j].idx = append(parts[j].idx, i)
	}
	var wg sync.WaitGroup
	for _, p := range parts {
		bs, ok := p.t.(transport.BatchSender)
		if !ok {
			for _, i := range p.idx {
				wg.Go(func() { errs[i] = p.t.Send(ctx, msgs[i].Topic, msgs[i].Message) })
			}
			continue
		}
		wg.Go(func() {
			sub := make([]transport.Outgoing, len(p.idx))
			for k, i := range p.idx {
				sub[k] = msgs[i]
			}
			res := bs.SendBatch(ctx, sub)
			for k, i := range p.idx {
				switch {
				case k < len(res):
					errs[i] = res[k]
				default:
					errs[i] = fmt.Errorf("route: the transport returned %d results for a batch of %d", len(res), len(sub))
				}
			}
		})
	}
	wg.Wait()
	return errs
}

// Consume consumes from the Default transport.
func (rt *Router) Consume(ctx context.Context, group string, topics []string, h transport.Handler) error {
	if rt.def == nil {
		return ErrNoReceiver
	}
	return rt.def.Consume(ctx, group, topics, h)
}

// ConsumeBatch consumes from the Default transport, in batches if it
// takes them, else in batches of one.
func (rt *Router) ConsumeBatch(ctx context.Context, group string, topics []string, max int, linger time.Duration, h transport.BatchHandler) error {
	if rt.def == nil {
		return ErrNoReceiver
	}
	if br, ok := rt.def.(transport.BatchReceiver); ok {
		return br.ConsumeBatch(ctx, group, topics, max, linger, h)
	}
	return rt.def.Consume(ctx, group, topics, func(ctx context.Context, d transport.Delivery) error {
		res := h(ctx, []transport.Delivery{d})
		if len(res) != 1 {
			return fmt.Errorf("route: the batch handler returned %d results for 1 delivery", len(res))
		}
		return res[0]
	})
}

// Close closes every transport once, and returns their errors joined.
func (rt *Router) Close() error {
	var all []transport.Transport
	for _, r := range rt.rules {
		all = append(all, r.Transport)
	}
	if rt.def != nil {
		all = append(all, rt.def)
	}
	var errs []error
	for i, t := range all {
		if slices.Contains(all[:i], t) {
			continue
		}
		if err := t.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
