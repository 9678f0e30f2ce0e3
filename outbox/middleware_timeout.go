package outbox

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrHandlerTimeout is the cause of the context of a handler call that
// overran its timeout, and is wrapped by the call's error.
var ErrHandlerTimeout = errors.New("handler timeout exceeded")

// Timeout returns the middleware that gives the rest of the chain d to
// finish: its context ends after d (with [ErrHandlerTimeout] as its
// cause), and a call still running then, or returning after it, fails the
// attempt with an error saying so, even if it returned nil. The handler
// should watch ctx; the outbox cannot stop a handler that does not.
//
// Every subscription has it, with the timeout of [WithHandlerTimeout] or
// Options.HandlerTimeout.
func Timeout(d time.Duration) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Message) error {
			cause := fmt.Errorf("%w: the call did not finish within %v", ErrHandlerTimeout, d)
			ctx, cancel := context.WithTimeoutCause(ctx, d, cause)
			defer cancel()
			err := next(ctx, m)
			if ctx.Err() != nil && errors.Is(context.Cause(ctx), ErrHandlerTimeout) {
				if err == nil {
					return fmt.Errorf("handler of message %s on %q: %w", m.ID, m.Name, cause)
				}
				return fmt.Errorf("handler of message %s on %q: %w: %w", m.ID, m.Name, cause, err)
			}
			return err
		}
	}
}
