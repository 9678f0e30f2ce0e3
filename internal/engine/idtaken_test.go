package engine

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/storage"
)

// InsertWithFreshIDs tries again with new ids while the id is taken, at
// most maxIDRenewals times, and returns any other outcome at once.
func TestInsertWithFreshIDs(t *testing.T) {
	gen, err := ids.NewGenerator(5)
	if err != nil {
		t.Fatal(err)
	}
	e := &Engine{ids: gen, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	taken := fmt.Errorf("insert: %w", storage.ErrIDTaken)
	for _, c := range []struct {
		name      string
		outcomes  []error // of the inserts, in turn; the last one repeats
		wantCalls int
		wantErr   error
	}{
		{"stored", []error{nil}, 1, nil},
		{"taken once", []error{taken, nil}, 2, nil},
		{"always taken", []error{taken}, 1 + maxIDRenewals, storage.ErrIDTaken},
		{"another error", []error{errors.New("boom")}, 1, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := &storage.Message{ID: gen.Next()}
			first := m.ID
			calls := 0
			err := e.InsertWithFreshIDs([]*storage.Message{m}, reIDReceived, func() error {
				calls++
				return c.outcomes[min(calls, len(c.outcomes))-1]
			})
			if calls != c.wantCalls {
				t.Errorf("%d inserts, want %d", calls, c.wantCalls)
			}
			if want := c.outcomes[min(calls, len(c.outcomes))-1]; err != want {
				t.Errorf("err = %v, want the last insert's %v", err, want)
			}
			if c.wantErr != nil && !errors.Is(err, c.wantErr) {
				t.Errorf("err = %v, want %v", err, c.wantErr)
			}
			if renewed := calls > 1; renewed != (m.ID != first) || (renewed && m.ID <= first) {
				t.Errorf("after %d inserts the id is %d (first %d): want a new, larger id exactly when one was taken", calls, m.ID, first)
			}
		})
	}
}
