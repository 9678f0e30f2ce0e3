package outbox

import (
	"context"
	"fmt"
	"runtime/debug"
)

// Recover returns the middleware that turns a panic of the rest of the
// chain into the call's error ("panic: <value>" and the stack), so the
// attempt fails and is retried like any other. Every subscription has it
// first, outermost; it is exported for chains an application or a test
// builds itself.
func Recover() Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Message) (err error) {
			defer func() {
				if r := recover(); r != nil {
					err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
				}
			}()
			return next(ctx, m)
		}
	}
}
