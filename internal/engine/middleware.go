package engine

import (
	"context"
	"fmt"
	"runtime/debug"

	"github.com/gocap/gocap/storage"
)

// SendFunc sends published rows over the transport and returns one error
// per row, in order. It is the hook where middleware and instrumentation
// wrap a send.
type SendFunc func(ctx context.Context, ms []*storage.Message) []error

// HandleFunc runs the subscribed handler of one received row: a
// Subscription's Handle, which the outbox package builds as the whole
// chain of its handler middleware (panic recovery, tracing, timeout, the
// application's), so a handler call has that one chain.
type HandleFunc func(ctx context.Context, m *storage.Message) error

// chain wraps base in mw, the first outermost.
func chain[F any](base F, mw ...func(F) F) F {
	for i := len(mw) - 1; i >= 0; i-- {
		base = mw[i](base)
	}
	return base
}

// recoverSend turns a panic of a send into an error for each of its rows.
func recoverSend(next SendFunc) SendFunc {
	return func(ctx context.Context, ms []*storage.Message) (errs []error) {
		defer func() {
			if r := recover(); r != nil {
				err := fmt.Errorf("panic: %v\n%s", r, debug.Stack())
				errs = make([]error, len(ms))
				for i := range errs {
					errs[i] = err
				}
			}
		}()
		return next(ctx, ms)
	}
}
