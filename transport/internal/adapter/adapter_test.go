package adapter

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gocap/gocap/transport"
)

func TestCheckConsume(t *testing.T) {
	if err := CheckConsume("x", "", []string{"a"}); err == nil || err.Error() != "x: consume: group is empty" {
		t.Errorf("empty group: %v", err)
	}
	if err := CheckConsume("x", "g", nil); err == nil || err.Error() != `x: consume for group "g": no topics` {
		t.Errorf("no topics: %v", err)
	}
	if err := CheckConsume("x", "g", []string{"a"}); err != nil {
		t.Errorf("valid arguments: %v", err)
	}
}

func TestUntilClosed(t *testing.T) {
	closed := make(chan struct{})
	ctx, cancel := UntilClosed(context.Background(), closed)
	defer cancel()
	if ctx.Err() != nil {
		t.Fatal("the context ended before the transport closed")
	}
	close(closed)
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the context did not end when the transport closed")
	}

	parent, end := context.WithCancel(context.Background())
	ctx, cancel = UntilClosed(parent, make(chan struct{}))
	defer cancel()
	end()
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the context did not end with its parent")
	}
}

func TestUnavailable(t *testing.T) {
	down := errors.New("connection refused")
	refused := errors.New("access refused")
	isDown := func(err error) bool { return errors.Is(err, down) }
	for _, c := range []struct {
		err  error
		want bool // wraps transport.ErrUnavailable
	}{
		{down, true},
		{fmt.Errorf("dialing: %w", down), true},
		{refused, false},
		{context.Canceled, false},
		{fmt.Errorf("%w: %w", context.DeadlineExceeded, down), false},
	} {
		got := Unavailable(c.err, isDown)
		if errors.Is(got, transport.ErrUnavailable) != c.want || !errors.Is(got, c.err) {
			t.Errorf("Unavailable(%v) = %v; wraps ErrUnavailable: want %v", c.err, got, c.want)
		}
	}
	if Unavailable(nil, isDown) != nil {
		t.Error("Unavailable(nil) is not nil")
	}
	already := fmt.Errorf("x: %w", transport.ErrUnavailable)
	if got := Unavailable(already, func(error) bool { t.Error("down asked about an unavailable error"); return true }); got != already {
		t.Errorf("an unavailable error was wrapped again: %v", got)
	}
}

func TestFailBatch(t *testing.T) {
	err := errors.New("boom")
	errs := FailBatch("kafka", "app.", []transport.Outgoing{{Topic: "a"}, {Topic: "b"}}, err)
	if len(errs) != 2 || errs[0].Error() != `kafka: send to "app.a": boom` || errs[1].Error() != `kafka: send to "app.b": boom` || !errors.Is(errs[1], err) {
		t.Errorf("FailBatch: %v", errs)
	}
	if errs := FailBatch("kafka", "", nil, err); len(errs) != 0 {
		t.Errorf("FailBatch of no messages: %v", errs)
	}
}
