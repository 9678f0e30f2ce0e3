package rabbitmq

import (
	"errors"
	"strings"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gocap/gocap/transport"
)

// TestLost checks the errors of messages whose confirms a closed channel
// lost: the one larger than the broker's max_message_size is refused for
// good, the others published with it are unavailable; another refusal
// counts as an attempt; a connection loss is unavailable.
func TestLost(t *testing.T) {
	size := &amqp.Error{Code: amqp.PreconditionFailed, Server: true, Recover: true,
		Reason: "PRECONDITION_FAILED - message size 135266304 is larger than configured max size 134217728"}
	defaultSize := &amqp.Error{Code: amqp.PreconditionFailed, Server: true, Recover: true,
		Reason: "PRECONDITION_FAILED - message size 600000000 is larger than max size 536870912"}
	cc := &amqp.Error{Code: amqp.PreconditionFailed, Server: true, Recover: true,
		Reason: `PRECONDITION_FAILED - invalid message: {unacceptable_type_in_header,"CC",longstr}`}
	forced := &amqp.Error{Code: amqp.ConnectionForced, Server: true, Reason: "CONNECTION_FORCED - broker forced connection closure"}
	for _, c := range []struct {
		name        string
		size        int
		reason      *amqp.Error
		refused     bool
		unavailable bool
		want        string
	}{
		{"too large", 135266304, size, true, false, "more than the broker's max_message_size (134217728)"},
		{"too large, default limit", 600000000, defaultSize, true, false, "max_message_size (536870912)"},
		{"published with a too large one", 10, size, false, true, "for a larger message"},
		{"another refusal", 10, cc, false, false, "unacceptable_type_in_header"},
		{"connection forced", 10, forced, false, true, "connection closed"},
		{"closed by the client", 10, nil, false, true, "connection closed"},
	} {
		err := lost("a.b", c.size, c.reason)
		var re *RefusedError
		if errors.As(err, &re) != c.refused || errors.Is(err, transport.ErrUnavailable) != c.unavailable || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want refused %v, unavailable %v, saying %q", c.name, err, c.refused, c.unavailable, c.want)
		}
	}
}
