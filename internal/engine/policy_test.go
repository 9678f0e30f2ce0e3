package engine

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPolicyWaits(t *testing.T) {
	cap := Policy{MaxAttempts: 50, ImmediateRetries: 3, Interval: time.Minute}
	var got []time.Duration
	for n := 1; n <= 5; n++ {
		got = append(got, cap.Wait(n))
	}
	if want := []time.Duration{0, 0, 0, time.Minute, time.Minute}; !slices.Equal(got, want) {
		t.Errorf("CAP's policy waits %v, want %v", got, want)
	}
	sched := Policy{MaxAttempts: 5, Schedule: []time.Duration{time.Second, 2 * time.Second}}
	if w := []time.Duration{sched.Wait(1), sched.Wait(2), sched.Wait(3)}; !slices.Equal(w, []time.Duration{time.Second, 2 * time.Second, 2 * time.Second}) {
		t.Errorf("schedule waits %v", w)
	}
	exp := Policy{MaxAttempts: 9, Backoff: &Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 2}}
	if w := []time.Duration{exp.Wait(1), exp.Wait(2), exp.Wait(4), exp.Wait(9)}; !slices.Equal(w, []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 800 * time.Millisecond, time.Second}) {
		t.Errorf("exponential waits %v", w)
	}
	jit := Policy{MaxAttempts: 9, Backoff: &Backoff{Initial: time.Second, Max: time.Second, Multiplier: 2, Jitter: 0.5}}
	seen := map[time.Duration]bool{}
	for range 50 {
		w := jit.Wait(3)
		if w < 500*time.Millisecond || w > 1500*time.Millisecond {
			t.Fatalf("jittered wait %v outside ±50%% of 1s", w)
		}
		seen[w] = true
	}
	if len(seen) < 10 {
		t.Errorf("jitter gave only %d distinct waits in 50", len(seen))
	}
}

func TestPolicyEncodeAndValidate(t *testing.T) {
	for _, p := range []Policy{
		{MaxAttempts: 50, ImmediateRetries: 3, Interval: time.Minute},
		{MaxAttempts: 15, Schedule: []time.Duration{15 * time.Second, 3 * time.Minute, 6 * time.Hour}},
		{MaxAttempts: 9, Backoff: &Backoff{Initial: time.Second, Max: time.Hour, Multiplier: 1.5, Jitter: 0.2}},
	} {
		got, err := DecodePolicy(p.Encode())
		if err != nil || got.Encode() != p.Encode() || got.Wait(2) != p.Wait(2) && p.Backoff == nil {
			t.Errorf("round trip of %+v: %+v, %v", p, got, err)
		}
	}
	for _, c := range []struct {
		p    Policy
		want string
	}{
		{Policy{MaxAttempts: 0}, "at least 1 attempt"},
		{Policy{MaxAttempts: 3, Schedule: []time.Duration{time.Second, 0}}, "Schedule[1]"},
		{Policy{MaxAttempts: 3, Schedule: []time.Duration{-time.Second}}, "Schedule[0]"},
		{Policy{MaxAttempts: 3, Backoff: &Backoff{Initial: time.Second, Max: time.Millisecond, Multiplier: 2}}, "Backoff.Max"},
		{Policy{MaxAttempts: 3, Interval: -time.Second}, "negative"},
		// Stored in whole milliseconds: a wait under 1ms would be stored as none.
		{Policy{MaxAttempts: 3, Schedule: []time.Duration{time.Second, 500 * time.Microsecond}}, "Schedule[1] = 500µs: waits are stored in whole milliseconds"},
		{Policy{MaxAttempts: 3, Interval: time.Nanosecond}, "Interval = 1ns"},
		{Policy{MaxAttempts: 3, Backoff: &Backoff{Initial: 999 * time.Microsecond, Max: time.Second, Multiplier: 2}}, "Backoff.Initial = 999µs"},
		{Policy{MaxAttempts: 3, Backoff: &Backoff{Initial: time.Second, Max: 10 * time.Microsecond, Multiplier: 2}}, "Backoff.Max = 10µs"},
	} {
		if err := c.p.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Validate(%+v) = %v, want an error naming %q", c.p, err, c.want)
		}
	}
	// Every policy Validate accepts comes back from its stored form.
	ms := Policy{MaxAttempts: 2, Interval: time.Millisecond, Schedule: []time.Duration{time.Millisecond},
		Backoff: &Backoff{Initial: time.Millisecond, Max: time.Millisecond, Multiplier: 1}}
	if err := ms.Validate(); err != nil {
		t.Errorf("waits of 1ms refused: %v", err)
	}
	if _, err := DecodePolicy(ms.Encode()); err != nil {
		t.Errorf("waits of 1ms do not come back from %s: %v", ms.Encode(), err)
	}
	if _, err := DecodePolicy("{not json"); err == nil {
		t.Error("a broken stored policy decoded")
	}
	var ps policies
	ps.def = Policy{MaxAttempts: 7}
	if p, err := ps.of(""); err != nil || p.MaxAttempts != 7 {
		t.Errorf("empty stored policy: %+v, %v", p, err)
	}
	if p, err := ps.of(`{"max":2}`); err != nil || p.MaxAttempts != 2 {
		t.Errorf("stored policy: %+v, %v", p, err)
	}
}
