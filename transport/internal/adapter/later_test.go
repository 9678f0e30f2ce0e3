package adapter

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestLaterCallsAfterTheDelay(t *testing.T) {
	l := NewLater(20 * time.Millisecond)
	done := make(chan time.Duration, 1)
	start := time.Now()
	l.After(func() { done <- time.Since(start) })
	select {
	case d := <-done:
		if d < 20*time.Millisecond {
			t.Errorf("called after %v, before the delay", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("not called within 5s")
	}
	l.Stop(false)
	l.After(func() { t.Error("called after Stop") })
	time.Sleep(50 * time.Millisecond)
}

func TestLaterStop(t *testing.T) {
	for _, now := range []bool{false, true} {
		var calls atomic.Int32
		l := NewLater(time.Hour)
		for range 3 {
			l.After(func() { calls.Add(1) })
		}
		stopped := make(chan struct{})
		go func() { l.Stop(now); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			t.Fatalf("Stop(%v) did not return", now)
		}
		if want := map[bool]int32{false: 0, true: 3}[now]; calls.Load() != want {
			t.Errorf("Stop(%v): %d calls, want %d", now, calls.Load(), want)
		}
	}
}

// TestLaterStopWaits checks that Stop returns only after a call under way
// ended.
func TestLaterStopWaits(t *testing.T) {
	l := NewLater(time.Millisecond)
	started, release := make(chan struct{}), make(chan struct{})
	var ended atomic.Bool
	l.After(func() {
		close(started)
		<-release
		ended.Store(true)
	})
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("not called within 5s")
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		close(release)
	}()
	l.Stop(false)
	if !ended.Load() {
		t.Error("Stop returned while a call was under way")
	}
}
