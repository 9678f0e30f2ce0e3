package outboxtest

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
)

// Expected is one message that [RequireManyPublishedTx] expects: of Topic
// (as the application publishes to it: not empty, no wildcard), satisfying
// Opts (nil: anything).
type Expected struct {
	Topic string
	Opts  *Opts
}

// RequireManyPublishedTx requires that the messages visible in tx of the
// expected topics are exactly those expected, in the order they were
// published (a topic expected twice must have been published twice), each
// satisfying its Opts; it returns them in that order (decode each with
// [Decode]). Otherwise it fails the test, listing what it found. A
// message of a topic not expected is not looked at.
func RequireManyPublishedTx[TTx any](ctx context.Context, tb testing.TB, ob *outbox.Outbox[TTx], tx TTx, expected []Expected) []*storage.Message {
	tb.Helper()
	checkExpected(tb, ob, "RequireManyPublishedTx", expected)
	list, err := txLister(ob, tx)
	if err != nil {
		tb.Fatalf("outboxtest: RequireManyPublishedTx: %v", err)
	}
	return requireMany(ctx, tb, list, "RequireManyPublishedTx", expected)
}

// RequireManyPublished is [RequireManyPublishedTx] over the committed
// messages of the outbox's storage.
func RequireManyPublished[TTx any](ctx context.Context, tb testing.TB, ob *outbox.Outbox[TTx], expected []Expected) []*storage.Message {
	tb.Helper()
	checkExpected(tb, ob, "RequireManyPublished", expected)
	return requireMany(ctx, tb, storeLister(ob), "RequireManyPublished", expected)
}

// checkExpected fails the test if expected is empty, or if no message
// that ob publishes can be of the topic of one of them or satisfy its Opts.
func checkExpected[TTx any](tb testing.TB, ob *outbox.Outbox[TTx], fn string, expected []Expected) {
	tb.Helper()
	if len(expected) == 0 {
		tb.Fatalf("outboxtest: %s: no message expected (use RequireNotPublished to require none)", fn)
	}
	for i, e := range expected {
		if err := checkTopic(ob, e.Topic); err != nil {
			tb.Fatalf("outboxtest: %s: expected[%d]: %v", fn, i, err)
		}
		if err := e.Opts.orZero().check(); err != nil {
			tb.Fatalf("outboxtest: %s: expected[%d] (topic %q): %v", fn, i, e.Topic, err)
		}
	}
}

// requireMany returns the messages of the topics of expected, which
// checkExpected has checked, if they are those expected, or fails the
// test.
func requireMany(ctx context.Context, tb testing.TB, list lister, fn string, expected []Expected) []*storage.Message {
	tb.Helper()
	// The messages of each topic since the earliest Since of the
	// expectations of that topic (all of them if one has none).
	since := map[string]time.Time{}
	for _, e := range expected {
		s, seen := since[e.Topic]
		o := e.Opts.orZero()
		if !seen || (!s.IsZero() && (o.Since.IsZero() || o.Since.Before(s))) {
			since[e.Topic] = o.Since
		}
	}
	// Each row with the topic it was listed under: the application's name
	// of it, which m.Name is with Options.TopicPrefix before it.
	type row struct {
		m     *storage.Message
		topic string
	}
	var rows []row
	for _, topic := range slices.Sorted(maps.Keys(since)) {
		ms, err := published(ctx, list, topic, since[topic])
		if err != nil {
			tb.Fatalf("outboxtest: %s: %v", fn, err)
		}
		for _, m := range ms {
			rows = append(rows, row{m, topic})
		}
	}
	slices.SortFunc(rows, func(a, b row) int { return cmp.Compare(a.m.ID, b.m.ID) })

	want := make([]string, len(expected))
	for i, e := range expected {
		want[i] = e.Topic
	}
	got := make([]*storage.Message, len(rows))
	have := make([]string, len(rows))
	for i, r := range rows {
		got[i], have[i] = r.m, r.topic
	}
	if !slices.Equal(have, want) {
		tb.Fatalf("outboxtest: %s: published topics %q, want %q:\n%s", fn, have, want, lines(got, Opts{}))
	}
	var diffs []string
	for i, m := range got {
		if d := expected[i].Opts.orZero().mismatch(m); d != "" {
			diffs = append(diffs, fmt.Sprintf("    [%d] %s: %s", i, describe(m), d))
		}
	}
	if len(diffs) > 0 {
		tb.Fatalf("outboxtest: %s: the messages published to %q differ from those expected:\n%s", fn, want, strings.Join(diffs, "\n"))
	}
	return got
}
