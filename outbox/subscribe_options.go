package outbox

import (
	"fmt"
	"time"
)

// WithMiddleware adds middleware to the subscription's handler calls,
// inside the outbox's (Options.Middleware), the first outermost (see
// [Middleware] for the whole chain).
func WithMiddleware(mw ...Middleware) SubscribeOption {
	return func(c *subscribeConfig) {
		for _, m := range mw {
			if m == nil {
				c.err = fmt.Errorf("WithMiddleware: a middleware is nil")
				return
			}
		}
		c.middleware = append(c.middleware, mw...)
	}
}

// WithConcurrency lets at most n calls of the subscription's handler run
// at once in this process, within Options.HandlerConcurrency, which bounds
// all handler calls together. A message of a subscription at its limit
// does not hold a worker while it waits: the other subscriptions' messages
// are handled meanwhile. It waits, still leased to this process, until a
// call of its subscription ends (up to HandlerConcurrency messages per
// subscription wait so; more are put back in the table, due again half a
// second later, without counting as an attempt). n must be at least 1; by
// default a subscription has no limit of its own.
func WithConcurrency(n int) SubscribeOption {
	return func(c *subscribeConfig) {
		if n < 1 {
			c.err = fmt.Errorf("WithConcurrency(%d): the limit must be at least 1", n)
			return
		}
		c.concurrency = n
	}
}

// WithHandlerTimeout gives each call of the subscription's handler d to
// finish, instead of Options.HandlerTimeout (see [Timeout]). d must be
// positive and below Options.Lease, so that no message is handled after
// its lease ended and another process may have taken it.
func WithHandlerTimeout(d time.Duration) SubscribeOption {
	return func(c *subscribeConfig) {
		if d <= 0 {
			c.err = fmt.Errorf("WithHandlerTimeout(%v): the timeout must be positive", d)
			return
		}
		c.timeout = d
	}
}
