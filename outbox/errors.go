package outbox

import "github.com/gocap/gocap/internal/engine"

// Errors returned by an [Outbox].
var (
	// ErrClosed: the outbox was closed.
	ErrClosed = engine.ErrClosed
	// ErrRunning: Run was called twice, or Subscribe after Run.
	ErrRunning = engine.ErrRunning
)

// PermanentError marks an error that retrying cannot fix: the message
// becomes Failed at once. Wrap errors with [Permanent].
type PermanentError struct{ Err error }

// Error returns the wrapped error's text.
func (e *PermanentError) Error() string { return e.Err.Error() }

// Unwrap returns the wrapped error.
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent reports true: the processor recognises permanent errors by it.
func (e *PermanentError) Permanent() bool { return true }

// Permanent wraps err so that the message fails without further retries.
// A handler returns it for input it can never accept. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}
