package engine

import (
	"context"
	"fmt"

	"github.com/gocap/gocap/transport"
)

// HandleDirect runs the handler of group's subscription for d as a
// delivery from the broker would run it, without a broker and without a
// stored row: the message is built from d as a consumed delivery is
// (CAP's defaults, wire.Received; the subscription's retry policy) and
// goes to the subscription whose pattern matches its name, through that
// subscription's whole handler chain (Subscription.Handle: panic recovery,
// tracing, timeout, the outbox's and the subscription's middleware), but
// not under its concurrency limit. It returns the handler's error; the outcome is not recorded
// anywhere, and nothing is retried.
//
// It is for tests (package outboxtest), and must not be called while
// Subscribe is: call it after the subscriptions are registered. It does
// not need Run.
func (e *Engine) HandleDirect(ctx context.Context, group string, d transport.Delivery) error {
	r := e.receiver
	m := r.receivedMessage(group, d)
	s, ok := r.subscriptionFor(group, m.Name)
	if !ok {
		return fmt.Errorf("outbox: no subscription of group %q matches topic %q (subscribed there: %v)",
			group, m.Name, r.subscribedPatterns(group))
	}
	return s.Handle(ctx, m)
}

// subscribedPatterns lists the topic patterns subscribed in group.
func (r *receiver) subscribedPatterns(group string) []string {
	subs := r.groups[group]
	out := make([]string, len(subs))
	for i, s := range subs {
		out[i] = s.Pattern
	}
	return out
}
