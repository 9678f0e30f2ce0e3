package transport

import "context"

// HealthChecker is implemented by a transport that can tell whether it
// reaches its broker now. gocap's health report (outbox.Outbox.Health)
// asks it when the transport has it, and leaves the transport out of the
// readiness otherwise.
type HealthChecker interface {
	// Healthy returns nil if the transport reaches its broker now, or
	// can connect to it, and otherwise an error saying why not. It
	// returns when ctx ends, or sooner.
	Healthy(ctx context.Context) error
}
