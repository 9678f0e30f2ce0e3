package outbox

import (
	"context"
	"fmt"

	"github.com/gocap/gocap/internal/telemetry"
)

// tracing returns the middleware that runs the rest of the chain inside
// the consumer span of tel (continuing the trace whose context the
// message's headers carry) and records the handler metrics. A panic is
// recorded as the call's error and goes on to [Recover], outside it.
func tracing(tel *telemetry.Telemetry) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Message) (err error) {
			ctx, end := tel.StartHandle(ctx, telemetry.Handled{
				ID: m.ID, Name: m.Name, Group: m.Group, Headers: m.Headers, BodySize: len(m.Body), Retries: m.Retries,
			})
			panicked := true
			defer func() {
				if panicked {
					r := recover()
					end(fmt.Errorf("panic: %v", r))
					panic(r)
				}
			}()
			err = next(ctx, m)
			panicked = false
			end(err)
			return err
		}
	}
}
