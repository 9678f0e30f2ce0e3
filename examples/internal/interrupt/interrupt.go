// Package interrupt is what the examples under examples/ do on Ctrl-C: an
// interrupt (SIGINT) or SIGTERM cancels the context of the example's run,
// so that the run stops at its next wait and removes what it created (its
// deferred clean-ups run) before the process exits.
package interrupt

import (
	"context"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// LogPrefix starts the line Main logs when an interrupt ended the run
// ("interrupted (context canceled); ... are removed"); the examples' tests
// look for it to know the interrupt reached the run.
const LogPrefix = "interrupted ("

// Main calls run with a context that an interrupt (SIGINT, Ctrl-C) or
// SIGTERM cancels, and waits for it to return. If run returns an error
// after an interrupt, Main logs it with what (what run removed, such as
// "the example's schema and queue") as "interrupted (err); what are
// removed" and exits with status 130, as a shell does for Ctrl-C; any
// other error is fatal (log.Fatal, status 1). Further interrupts while
// run cleans up are ignored.
func Main(what string, run func(ctx context.Context) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	if err != nil && ctx.Err() != nil {
		log.Printf(LogPrefix+"%v); %s are removed", err, what)
		os.Exit(130)
	}
	stop()
	if err != nil {
		log.Fatal(err)
	}
}

// Sleep waits for d, or returns ctx's error (its cause) if ctx ends first
// (an interrupt).
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
