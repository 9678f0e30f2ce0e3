package outboxtest

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
)

// RequirePublishedTx requires that exactly one message of topic satisfying
// opts (nil: any) is visible in tx — published in it, or committed before
// — and returns its payload decoded into T by the outbox's serializer (a
// []byte T is the body as it is). Otherwise it fails the test, naming the
// topic and listing what it found. Several matching messages fail too:
// use [RequirePublishedCountTx] or [RequireManyPublishedTx] then.
//
// T is given, TTx inferred:
//
//	got := outboxtest.RequirePublishedTx[OrderPlaced](ctx, t, ob, tx, "orders.placed", nil)
func RequirePublishedTx[T any, TTx any](ctx context.Context, tb testing.TB, ob *outbox.Outbox[TTx], tx TTx, topic string, opts *Opts) T {
	tb.Helper()
	checkArgs(tb, ob, "RequirePublishedTx", topic, opts)
	list, err := txLister(ob, tx)
	if err != nil {
		tb.Fatalf("outboxtest: RequirePublishedTx(%q): %v", topic, err)
	}
	m := requireOne(ctx, tb, list, appTopics(ob), "RequirePublishedTx", topic, opts)
	return Decode[T](tb, ob, m)
}

// RequirePublished is [RequirePublishedTx] over the committed messages of
// the outbox's storage.
func RequirePublished[T any, TTx any](ctx context.Context, tb testing.TB, ob *outbox.Outbox[TTx], topic string, opts *Opts) T {
	tb.Helper()
	checkArgs(tb, ob, "RequirePublished", topic, opts)
	m := requireOne(ctx, tb, storeLister(ob), appTopics(ob), "RequirePublished", topic, opts)
	return Decode[T](tb, ob, m)
}

// RequireNotPublishedTx requires that no message of topic satisfying opts
// (nil: any) is visible in tx; otherwise it fails the test, listing those
// it found.
func RequireNotPublishedTx[TTx any](ctx context.Context, tb testing.TB, ob *outbox.Outbox[TTx], tx TTx, topic string, opts *Opts) {
	tb.Helper()
	checkArgs(tb, ob, "RequireNotPublishedTx", topic, opts)
	list, err := txLister(ob, tx)
	if err != nil {
		tb.Fatalf("outboxtest: RequireNotPublishedTx(%q): %v", topic, err)
	}
	requireCount(ctx, tb, list, appTopics(ob), "RequireNotPublishedTx", topic, 0, opts)
}

// RequireNotPublished is [RequireNotPublishedTx] over the committed
// messages of the outbox's storage.
func RequireNotPublished[TTx any](ctx context.Context, tb testing.TB, ob *outbox.Outbox[TTx], topic string, opts *Opts) {
	tb.Helper()
	checkArgs(tb, ob, "RequireNotPublished", topic, opts)
	requireCount(ctx, tb, storeLister(ob), appTopics(ob), "RequireNotPublished", topic, 0, opts)
}

// RequirePublishedCountTx requires that exactly n messages of topic
// satisfying opts (nil: any) are visible in tx, and returns them oldest
// first (decode each with [Decode]); otherwise it fails the test, listing
// what it found.
func RequirePublishedCountTx[TTx any](ctx context.Context, tb testing.TB, ob *outbox.Outbox[TTx], tx TTx, topic string, n int, opts *Opts) []*storage.Message {
	tb.Helper()
	checkArgs(tb, ob, "RequirePublishedCountTx", topic, opts)
	checkCount(tb, "RequirePublishedCountTx", topic, n)
	list, err := txLister(ob, tx)
	if err != nil {
		tb.Fatalf("outboxtest: RequirePublishedCountTx(%q): %v", topic, err)
	}
	return requireCount(ctx, tb, list, appTopics(ob), "RequirePublishedCountTx", topic, n, opts)
}

// RequirePublishedCount is [RequirePublishedCountTx] over the committed
// messages of the outbox's storage.
func RequirePublishedCount[TTx any](ctx context.Context, tb testing.TB, ob *outbox.Outbox[TTx], topic string, n int, opts *Opts) []*storage.Message {
	tb.Helper()
	checkArgs(tb, ob, "RequirePublishedCount", topic, opts)
	checkCount(tb, "RequirePublishedCount", topic, n)
	return requireCount(ctx, tb, storeLister(ob), appTopics(ob), "RequirePublishedCount", topic, n, opts)
}

// Decode returns m's body decoded into T by the outbox's serializer (a
// []byte T is the body as it is), or fails the test.
func Decode[T any, TTx any](tb testing.TB, ob *outbox.Outbox[TTx], m *storage.Message) T {
	tb.Helper()
	var v T
	if b, ok := any(&v).(*[]byte); ok {
		*b = m.Body
		return v
	}
	if err := ob.Serializer().Unmarshal(m.Body, &v); err != nil {
		tb.Fatalf("outboxtest: decoding %s of topic %q into %T: %v", describe(m), appTopics(ob)(m.Name), v, err)
	}
	return v
}

// requireOne returns the one message of topic that satisfies opts, or
// fails the test; app names other topics in its message.
func requireOne(ctx context.Context, tb testing.TB, list lister, app func(string) string, fn, topic string, opts *Opts) *storage.Message {
	tb.Helper()
	o := opts.orZero()
	all, matched := find(ctx, tb, list, fn, topic, o)
	switch len(matched) {
	case 1:
		return matched[0]
	case 0:
		tb.Fatalf("outboxtest: %s: %s", fn, notFound(ctx, list, app, topic, o, all))
	default:
		tb.Fatalf("outboxtest: %s: %d messages published to %q%s, want one (RequirePublishedCount and RequireManyPublished take several):\n%s",
			fn, len(matched), topic, with(o), lines(matched, o))
	}
	return nil
}

// requireCount returns the n messages of topic that satisfy opts, or fails
// the test; app names other topics in its message.
func requireCount(ctx context.Context, tb testing.TB, list lister, app func(string) string, fn, topic string, n int, opts *Opts) []*storage.Message {
	tb.Helper()
	o := opts.orZero()
	all, matched := find(ctx, tb, list, fn, topic, o)
	switch {
	case len(matched) == n:
		return matched
	case len(matched) == 0:
		tb.Fatalf("outboxtest: %s: want %d, found none: %s", fn, n, notFound(ctx, list, app, topic, o, all))
	case n == 0:
		tb.Fatalf("outboxtest: %s: %d messages published to %q%s, want none:\n%s", fn, len(matched), topic, with(o), lines(matched, o))
	default:
		tb.Fatalf("outboxtest: %s: %d messages published to %q%s, want %d:\n%s", fn, len(matched), topic, with(o), n, lines(all, o))
	}
	return nil
}

// find reads the messages of topic (since o.Since), and those of them that
// satisfy o, or fails the test.
func find(ctx context.Context, tb testing.TB, list lister, fn, topic string, o Opts) (all, matched []*storage.Message) {
	tb.Helper()
	all, err := published(ctx, list, topic, o.Since)
	if err != nil {
		tb.Fatalf("outboxtest: %s: %v", fn, err)
	}
	for _, m := range all {
		if o.mismatch(m) == "" {
			matched = append(matched, m)
		}
	}
	return all, matched
}

// notFound says that no message of topic satisfied o, and what there was;
// app names the topics of other messages.
func notFound(ctx context.Context, list lister, app func(string) string, topic string, o Opts, all []*storage.Message) string {
	if len(all) == 0 {
		msg := fmt.Sprintf("no message published to %q", topic)
		if !o.Since.IsZero() {
			msg += " since " + o.Since.UTC().Format("2006-01-02T15:04:05.000Z07:00")
		}
		if others := newestTopics(ctx, list, app, o.Since); len(others) > 0 {
			msg += fmt.Sprintf("; the newest messages are of topics %q", others)
		} else {
			msg += "; no message of any topic"
		}
		return msg
	}
	return fmt.Sprintf("no message published to %q%s; found %d that differ:\n%s", topic, with(o), len(all), lines(all, o))
}

// with is " with " and what o requires, or "" when it requires nothing.
func with(o Opts) string {
	if s := o.String(); s != "" {
		return " with " + s
	}
	return ""
}

// lines describes ms one per line, each with what it lacks of o.
func lines(ms []*storage.Message, o Opts) string {
	var b strings.Builder
	for i, m := range ms {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString("    " + describe(m))
		if d := o.mismatch(m); d != "" {
			b.WriteString(": " + d)
		}
	}
	return b.String()
}
