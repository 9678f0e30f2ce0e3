package adapter

import (
	"errors"
	"testing"
	"time"
)

func TestGather(t *testing.T) {
	in := make(chan int, 10)
	for i := range 5 {
		in <- i
	}
	// Full: handed over at once, the rest left waiting.
	got, ok := Gather(in, []int{-1}, 3, time.Now().Add(time.Hour), 0)
	if !ok || len(got) != 3 || got[2] != 1 || len(in) != 3 {
		t.Errorf("full batch: %v %v, %d left", got, ok, len(in))
	}
	// Nothing more waiting, no linger: handed over at once.
	got, ok = Gather(in, []int{-1}, 10, time.Now(), 0)
	if !ok || len(got) != 4 || len(in) != 0 {
		t.Errorf("drained batch: %v %v", got, ok)
	}
	// Linger: waits for a late delivery, then for the deadline.
	go func() { time.Sleep(20 * time.Millisecond); in <- 7 }()
	start := time.Now()
	got, ok = Gather(in, []int{-1}, 10, start.Add(200*time.Millisecond), 0)
	if d := time.Since(start); !ok || len(got) != 2 || d < 200*time.Millisecond || d > 2*time.Second {
		t.Errorf("lingering batch: %v %v after %v", got, ok, d)
	}
	// Grace: a delivery that comes just after the deadline still counts.
	go func() { time.Sleep(5 * time.Millisecond); in <- 8 }()
	got, ok = Gather(in, []int{-1}, 10, time.Now(), time.Second)
	if !ok || len(got) != 2 {
		t.Errorf("graced batch: %v %v", got, ok)
	}
	close(in)
	if got, ok = Gather(in, []int{-1}, 10, time.Now().Add(time.Hour), 0); ok || len(got) != 1 {
		t.Errorf("closed input: %v %v", got, ok)
	}
}

func TestResults(t *testing.T) {
	errs := []error{nil, errors.New("x")}
	if got := Results(errs, 2); &got[0] != &errs[0] {
		t.Error("a full result slice was replaced")
	}
	got := Results([]error{nil}, 3)
	if len(got) != 3 || got[0] == nil || got[2] == nil {
		t.Errorf("short results: %v", got)
	}
	if BatchSize(0, 16) != 16 || BatchSize(5, 16) != 5 {
		t.Error("BatchSize")
	}
}
