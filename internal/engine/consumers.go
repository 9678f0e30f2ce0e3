package engine

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gocap/gocap/transport"
)

// consumerGrace is how long a consumer that was restarted after a failure
// must keep running before it counts as consuming again.
const consumerGrace = 5 * time.Second

// ConsumerProblem is a consumer group whose transport consumer failed and
// has not been running well since.
type ConsumerProblem struct {
	// Group is the consumer group.
	Group string
	// Misconfigured is true when the transport said that no retry can
	// help until the configuration changes (transport.ErrMisconfigured).
	Misconfigured bool
	// Since is when the consumer first failed in this run of failures.
	Since time.Time
	// Err is the last error of the consumer.
	Err error
}

// consumerStates records, per group, the failures of the transport's
// consumer, for the readiness report.
type consumerStates struct {
	mu     sync.Mutex
	groups map[string]*consumerState
}

type consumerState struct {
	err       error
	since     time.Time // first failure of the current run of failures
	failedAt  time.Time // last failure
	startedAt time.Time // last start of Consume
}

func (c *consumerStates) state(group string) *consumerState {
	if c.groups == nil {
		c.groups = map[string]*consumerState{}
	}
	s := c.groups[group]
	if s == nil {
		s = &consumerState{}
		c.groups[group] = s
	}
	return s
}

// started notes that group's Consume starts at now. A consumer that ran
// for consumerGrace since its last failure is healthy again.
func (c *consumerStates) started(group string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.state(group).startedAt = now
}

// failed notes that group's Consume returned err at now.
func (c *consumerStates) failed(group string, err error, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.state(group)
	if s.err == nil || s.healthy(now) {
		s.since = now
	}
	s.err, s.failedAt = err, now
}

func (s *consumerState) healthy(now time.Time) bool {
	return s.err == nil || (s.startedAt.After(s.failedAt) && now.Sub(s.startedAt) >= consumerGrace)
}

// problems lists the groups whose consumer is failing at now, by group.
func (c *consumerStates) problems(now time.Time) []ConsumerProblem {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []ConsumerProblem
	for g, s := range c.groups {
		if s.healthy(now) {
			continue
		}
		out = append(out, ConsumerProblem{Group: g, Since: s.since, Err: s.err,
			Misconfigured: errors.Is(s.err, transport.ErrMisconfigured)})
	}
	slices.SortFunc(out, func(a, b ConsumerProblem) int { return strings.Compare(a.Group, b.Group) })
	return out
}

// ConsumerProblems lists the consumer groups whose transport consumer
// failed and has not run well for a few seconds since (while Run runs):
// the broker refused it, the connection is lost, or the configuration is
// wrong (ConsumerProblem.Misconfigured).
func (e *Engine) ConsumerProblems() []ConsumerProblem {
	return e.receiver.consumers.problems(time.Now())
}
