package engine

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"
)

// Policy is a retry policy: when a failed attempt is tried again, and how
// many attempts a message gets. A row's policy is fixed when the row is
// inserted and stored with it (storage.Message.Policy, in the form Encode
// makes), so every processor, after any restart, retries it alike; an
// empty stored policy means the engine's default.
//
// Exactly one way of waiting applies: Schedule if it is set, else Backoff
// if it is set, else CAP's: ImmediateRetries retries at once, then one
// every Interval.
type Policy struct {
	MaxAttempts      int
	ImmediateRetries int
	Interval         time.Duration
	// Schedule is the wait before each retry: Schedule[0] after the first
	// failure, Schedule[1] after the second, …; past its end the last wait
	// repeats.
	Schedule []time.Duration
	// Backoff, if set, waits Initial after the first failure, then
	// Multiplier times longer after each next one, at most Max, each wait
	// moved by up to ±Jitter of itself at random.
	Backoff *Backoff
}

// Backoff is an exponential retry wait (see Policy).
type Backoff struct {
	Initial, Max time.Duration
	Multiplier   float64
	Jitter       float64
}

// Validate reports what is wrong with p, if anything. A wait is stored in
// whole milliseconds (Encode), so a positive wait under a millisecond,
// which would be stored as none, is an error too.
func (p Policy) Validate() error {
	if p.MaxAttempts < 1 {
		return fmt.Errorf("retry policy: MaxAttempts %d: a message needs at least 1 attempt", p.MaxAttempts)
	}
	if p.ImmediateRetries < 0 || p.Interval < 0 {
		return fmt.Errorf("retry policy: ImmediateRetries %d and Interval %v must not be negative", p.ImmediateRetries, p.Interval)
	}
	if err := storableWait("Interval", p.Interval); err != nil {
		return err
	}
	for i, w := range p.Schedule {
		if w <= 0 {
			return fmt.Errorf("retry policy: Schedule[%d] = %v: every wait of a schedule must be positive", i, w)
		}
		if err := storableWait(fmt.Sprintf("Schedule[%d]", i), w); err != nil {
			return err
		}
	}
	if b := p.Backoff; b != nil {
		if err := storableWait("Backoff.Initial", b.Initial); err != nil {
			return err
		}
		if err := storableWait("Backoff.Max", b.Max); err != nil {
			return err
		}
		switch {
		case b.Initial <= 0:
			return fmt.Errorf("retry policy: Backoff.Initial %v must be positive", b.Initial)
		case b.Max < b.Initial:
			return fmt.Errorf("retry policy: Backoff.Max %v must be at least Backoff.Initial %v", b.Max, b.Initial)
		case b.Multiplier < 1:
			return fmt.Errorf("retry policy: Backoff.Multiplier %v must be at least 1", b.Multiplier)
		case b.Jitter < 0 || b.Jitter > 1:
			return fmt.Errorf("retry policy: Backoff.Jitter %v must be within 0..1", b.Jitter)
		}
	}
	return nil
}

// Wait returns how long a row waits for its next attempt after its
// retries-th failure (retries ≥ 1).
func (p Policy) Wait(retries int) time.Duration {
	n := max(retries, 1)
	switch {
	case len(p.Schedule) > 0:
		return p.Schedule[min(n, len(p.Schedule))-1]
	case p.Backoff != nil:
		b := p.Backoff
		w := float64(b.Initial) * math.Pow(b.Multiplier, float64(n-1))
		w = min(w, float64(b.Max))
		if b.Jitter > 0 {
			w *= 1 + b.Jitter*(2*rand.Float64()-1)
		}
		return time.Duration(w)
	case n <= p.ImmediateRetries:
		return 0
	default:
		return p.Interval
	}
}

// storableWait returns an error naming field if the wait w is positive but
// under a millisecond: the stored form keeps whole milliseconds, so it
// would be stored as no wait at all, and the stored policy refused when
// read back.
func storableWait(field string, w time.Duration) error {
	if w > 0 && w < time.Millisecond {
		return fmt.Errorf("retry policy: %s = %v: waits are stored in whole milliseconds; use at least 1ms", field, w)
	}
	return nil
}

// encodedPolicy is the stored form of a Policy: short keys, durations in
// milliseconds.
type encodedPolicy struct {
	MaxAttempts int     `json:"max"`
	Immediate   int     `json:"imm,omitempty"`
	Interval    int64   `json:"ivl,omitempty"`
	Schedule    []int64 `json:"sch,omitempty"`
	Backoff     *struct {
		Initial    int64   `json:"ini"`
		Max        int64   `json:"max"`
		Multiplier float64 `json:"mul"`
		Jitter     float64 `json:"jit,omitempty"`
	} `json:"exp,omitempty"`
}

// Encode returns the stored form of p.
func (p Policy) Encode() string {
	e := encodedPolicy{MaxAttempts: p.MaxAttempts, Immediate: p.ImmediateRetries, Interval: p.Interval.Milliseconds()}
	for _, w := range p.Schedule {
		e.Schedule = append(e.Schedule, w.Milliseconds())
	}
	if b := p.Backoff; b != nil {
		e.Backoff = &struct {
			Initial    int64   `json:"ini"`
			Max        int64   `json:"max"`
			Multiplier float64 `json:"mul"`
			Jitter     float64 `json:"jit,omitempty"`
		}{b.Initial.Milliseconds(), b.Max.Milliseconds(), b.Multiplier, b.Jitter}
	}
	out, _ := json.Marshal(e) // a struct of numbers always encodes
	return string(out)
}

// DecodePolicy reads a stored policy.
func DecodePolicy(s string) (Policy, error) {
	var e encodedPolicy
	if err := json.Unmarshal([]byte(s), &e); err != nil {
		return Policy{}, fmt.Errorf("decoding retry policy %q: %w", s, err)
	}
	p := Policy{MaxAttempts: e.MaxAttempts, ImmediateRetries: e.Immediate, Interval: time.Duration(e.Interval) * time.Millisecond}
	for _, w := range e.Schedule {
		p.Schedule = append(p.Schedule, time.Duration(w)*time.Millisecond)
	}
	if b := e.Backoff; b != nil {
		p.Backoff = &Backoff{time.Duration(b.Initial) * time.Millisecond, time.Duration(b.Max) * time.Millisecond, b.Multiplier, b.Jitter}
	}
	if err := p.Validate(); err != nil {
		return Policy{}, fmt.Errorf("stored retry policy %q: %w", s, err)
	}
	return p, nil
}

// policies decodes stored policies once each: a processor sees few
// distinct ones, many times.
type policies struct {
	def   Policy
	cache sync.Map // stored form → Policy
}

// of returns the policy stored as s, or the default for "" or a policy
// that does not decode (with the error, so that it is logged).
func (ps *policies) of(s string) (Policy, error) {
	if s == "" {
		return ps.def, nil
	}
	if p, ok := ps.cache.Load(s); ok {
		return p.(Policy), nil
	}
	p, err := DecodePolicy(s)
	if err != nil {
		return ps.def, err
	}
	ps.cache.Store(s, p)
	return p, nil
}
