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

// HandleFunc runs the subscribed handler of one received row. It is the
// hook where middleware and instrumentation wrap a handler call.
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

// recoverHandle turns a panic of a handler into its error.
func recoverHandle(next HandleFunc) HandleFunc {
	return func(ctx context.Context, m *storage.Message) (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
			}
		}()
		return next(ctx, m)
	}
}
