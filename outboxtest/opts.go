package outboxtest

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/wire"
)

// Opts are what an assertion requires of a published message besides its
// topic; the zero value (or a nil *Opts) requires nothing more. A message
// of the topic that does not satisfy them does not count, and a failure
// message says, for each message of the topic, what differed.
type Opts struct {
	// Headers the message must carry, each with this value (it may carry
	// others): those of outbox.WithHeader, or CAP's, such as
	// wire.CorrelationID.
	Headers map[string]string
	// Delay, when not zero, is the delay the message was published with
	// (outbox.WithDelay): its cap-delaytime header must be Delay's. A
	// negative Delay, which no publish has, fails the assertion.
	Delay time.Duration
	// Status, when not empty, is the status the message must have: a
	// message published with a delay is Delayed until it is due, one not
	// yet sent Scheduled, one sent Succeeded. A Status that is not one of
	// storage.Statuses (spelled as they are) fails the assertion.
	Status storage.Status
	// Since, when not zero, leaves out the messages published before it
	// (by the time their id encodes, to the millisecond): in a table that
	// tests share, those of earlier tests.
	Since time.Time
}

func (o *Opts) orZero() Opts {
	if o == nil {
		return Opts{}
	}
	return *o
}

// String describes what o requires, for failure messages: "" when nothing.
func (o Opts) String() string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(o.Headers)) {
		parts = append(parts, fmt.Sprintf("header %s=%q", k, o.Headers[k]))
	}
	if o.Delay != 0 {
		parts = append(parts, "delay "+wire.FormatDelay(o.Delay))
	}
	if o.Status != "" {
		parts = append(parts, "status "+string(o.Status))
	}
	if !o.Since.IsZero() {
		parts = append(parts, "since "+o.Since.UTC().Format(time.RFC3339Nano))
	}
	return strings.Join(parts, ", ")
}

// mismatch returns what of o message m does not satisfy, or "" when it
// satisfies all.
func (o Opts) mismatch(m *storage.Message) string {
	var diffs []string
	for _, k := range slices.Sorted(maps.Keys(o.Headers)) {
		want := o.Headers[k]
		switch got, ok := m.Headers[k]; {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("no header %s (want %q)", k, want))
		case got != want:
			diffs = append(diffs, fmt.Sprintf("header %s=%q (want %q)", k, got, want))
		}
	}
	if o.Delay != 0 {
		want := wire.FormatDelay(o.Delay)
		if got, ok := m.Headers[wire.DelayTime]; !ok {
			diffs = append(diffs, "not delayed (want delay "+want+")")
		} else if got != want {
			diffs = append(diffs, "delay "+got+" (want "+want+")")
		}
	}
	if o.Status != "" && m.Status != o.Status {
		diffs = append(diffs, fmt.Sprintf("status %s (want %s)", m.Status, o.Status))
	}
	if !o.Since.IsZero() && m.ID < storage.MinIDAt(o.Since) {
		diffs = append(diffs, "published at "+storage.IDTime(m.ID).Format(time.RFC3339Nano)+" (want since "+
			o.Since.UTC().Format(time.RFC3339Nano)+")")
	}
	return strings.Join(diffs, ", ")
}

// describe is one line about m for a failure message: its id, status,
// delay, the headers that are neither CAP's nor trace context, and the
// start of its body.
func describe(m *storage.Message) string {
	var b strings.Builder
	fmt.Fprintf(&b, "message %d (%s", m.ID, m.Status)
	if d, ok := m.Headers[wire.DelayTime]; ok {
		fmt.Fprintf(&b, ", delay %s", d)
	}
	b.WriteString(")")
	var own []string
	for _, k := range slices.Sorted(maps.Keys(m.Headers)) {
		if !strings.HasPrefix(k, "cap-") && k != "traceparent" && k != "tracestate" && k != "baggage" {
			own = append(own, fmt.Sprintf("%s=%q", k, m.Headers[k]))
		}
	}
	if len(own) > 0 {
		fmt.Fprintf(&b, " headers {%s}", strings.Join(own, " "))
	}
	body := m.Body
	const maxBody = 200
	if len(body) > maxBody {
		fmt.Fprintf(&b, " body %s… (%d bytes)", strconv.Quote(string(body[:maxBody])), len(body))
	} else {
		fmt.Fprintf(&b, " body %s", strconv.Quote(string(body)))
	}
	return b.String()
}
