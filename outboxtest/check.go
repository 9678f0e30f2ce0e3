package outboxtest

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/gocap/gocap/internal/topic"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
)

// checkArgs fails the test if no message that ob publishes can be of
// name or satisfy opts: such an assertion would fail for a reason other
// than what was published, or a RequireNotPublished pass whatever was.
func checkArgs[TTx any](tb testing.TB, ob *outbox.Outbox[TTx], fn, name string, opts *Opts) {
	tb.Helper()
	if err := checkTopic(ob, name); err != nil {
		tb.Fatalf("outboxtest: %s(%q): %v", fn, name, err)
	}
	if err := opts.orZero().check(); err != nil {
		tb.Fatalf("outboxtest: %s(%q): %v", fn, name, err)
	}
}

// checkTopic returns an error saying why no message that ob publishes can
// be of name — empty, a name ob.Publish refuses (not valid, with a
// wildcard, too long with Options.TopicPrefix) — or nil.
func checkTopic[TTx any](ob *outbox.Outbox[TTx], name string) error {
	if name == "" {
		return errors.New("the topic is empty: name the topic the messages are published to " +
			"(an empty one would stand for every topic)")
	}
	if err := topic.Validate(name); err != nil {
		return fmt.Errorf("%w: Publish refuses it, so no message can be of it", err)
	}
	if topic.HasWildcard(name) {
		return fmt.Errorf("topic %q has a wildcard: Publish refuses one (wildcards are for subscriptions), "+
			"so no message can be of it; name each topic", name)
	}
	if n := len(ob.TopicName(name)); n > topic.MaxLen {
		return fmt.Errorf("topic %q is %d bytes long with Options.TopicPrefix: Publish refuses more than %d, "+
			"so no message can be of it", name, n, topic.MaxLen)
	}
	return nil
}

// check returns an error saying what of o no published message can
// satisfy, or nil.
func (o Opts) check() error {
	if o.Status != "" && !slices.Contains(storage.Statuses, o.Status) {
		return fmt.Errorf("Opts.Status %q is not a status: a message has one of %q (storage.Statuses)", o.Status, storage.Statuses)
	}
	if o.Delay < 0 {
		return fmt.Errorf("Opts.Delay %v is negative: Publish refuses a negative delay, so no message has one", o.Delay)
	}
	return nil
}

// checkCount fails the test if n, the number of messages an assertion
// requires, is negative.
func checkCount(tb testing.TB, fn, name string, n int) {
	tb.Helper()
	if n < 0 {
		tb.Fatalf("outboxtest: %s(%q): the count %d is negative", fn, name, n)
	}
}
