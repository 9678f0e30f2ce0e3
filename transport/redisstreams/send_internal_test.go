package redisstreams

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/gocap/gocap/transport"
)

// reply is an error reply of Redis, as go-redis returns one.
type reply string

func (r reply) Error() string { return string(r) }
func (reply) RedisError()     {}

// TestSendErrorClassification: an XADD's error is permanent when Redis
// refused it for good, transport.ErrUnavailable when Redis was not reached
// or cannot serve now, and otherwise a failed attempt. The replies are
// Redis 7's own texts.
func TestSendErrorClassification(t *testing.T) {
	const (
		permanent   = "permanent"
		unavailable = "unavailable"
		attempt     = "attempt"
	)
	for _, c := range []struct {
		err  error
		want string
	}{
		{reply("WRONGTYPE Operation against a key holding the wrong kind of value"), permanent},
		{reply("ERR Invalid stream ID specified as stream command argument"), permanent},
		{reply("OOM command not allowed when used memory > 'maxmemory'."), attempt},
		{reply("MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk."), attempt},
		{reply("NOPERM this user has no permissions to access one of the keys used as arguments"), attempt},
		{reply("NOAUTH Authentication required."), attempt},
		{reply("WRONGPASS invalid username-password pair or user is disabled."), attempt},
		{reply("LOADING Redis is loading the dataset in memory"), unavailable},
		{reply("READONLY You can't write against a read only replica."), unavailable},
		{reply("BUSY Redis is busy running a script."), unavailable},
		{reply("TRYAGAIN Multiple keys request during rehashing of slot"), unavailable},
		{reply("CLUSTERDOWN The cluster is down"), unavailable},
		{reply("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."), unavailable},
		{reply("NOREPLICAS Not enough good replicas to write."), unavailable},
		{reply("ERR max number of clients reached"), unavailable},
		{reply("MOVED 3999 127.0.0.1:6381"), attempt},
		{reply("ASK 3999 127.0.0.1:6381"), attempt},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, unavailable},
		{fmt.Errorf("sending: %w", context.Canceled), attempt},
	} {
		err := sendError("s", c.err)
		var p interface{ Permanent() bool }
		got := attempt
		switch {
		case errors.As(err, &p) && p.Permanent():
			got = permanent
		case errors.Is(err, transport.ErrUnavailable):
			got = unavailable
		}
		if got != c.want {
			t.Errorf("%q: %s (%v), want %s", c.err, got, err, c.want)
		}
		if !errors.Is(err, c.err) {
			t.Errorf("%q: %v does not wrap the reply", c.err, err)
		}
	}
}

// TestConsumerRefused: a consumer's command refused for good ends
// Consume; a missing group or a cluster's redirect (slots moving) has it
// reconnect instead.
func TestConsumerRefused(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{reply("WRONGTYPE Operation against a key holding the wrong kind of value"), true},
		{reply("NOPERM this user has no permissions to access one of the keys used as arguments"), true},
		{reply("NOGROUP No such key 's' or consumer group 'g' in XREADGROUP with GROUP option"), false},
		{reply("MOVED 3999 127.0.0.1:6381"), false},
		{reply("ASK 3999 127.0.0.1:6381"), false},
		{reply("TRYAGAIN Multiple keys request during rehashing of slot"), false},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, false},
	} {
		if got := refused(c.err); got != c.want {
			t.Errorf("refused(%q) = %v, want %v", c.err, got, c.want)
		}
	}
}
