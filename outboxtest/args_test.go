package outboxtest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/outboxtest"
	"github.com/gocap/gocap/storage"
)

// TestArgumentsNoMessageCanMatch: a topic or Opts that no publish can
// produce fails every assertion, naming the argument, rather than letting
// RequireNotPublished pass whatever was published (or an empty topic match
// the messages of every topic).
func TestArgumentsNoMessageCanMatch(t *testing.T) {
	ctx := context.Background()
	e := sqliteEnv(t, outbox.Options{TopicPrefix: "shop"})
	ob := e.ob
	tx, commit, _ := e.begin(t)
	if _, err := ob.Publish(ctx, tx, "orders.placed", order{ID: 1}); err != nil {
		t.Fatal(err)
	}
	if err := commit(); err != nil {
		t.Fatal(err)
	}
	tx, _, _ = e.begin(t)

	// Each assertion, given the topic and opts to check; the many ones
	// after an expectation that is fine.
	many := func(topic string, o *outboxtest.Opts) []outboxtest.Expected {
		return []outboxtest.Expected{{Topic: "orders.placed"}, {Topic: topic, Opts: o}}
	}
	assertions := []struct {
		name   string
		assert func(tb testing.TB, topic string, o *outboxtest.Opts)
	}{
		{"RequirePublishedTx", func(tb testing.TB, topic string, o *outboxtest.Opts) {
			outboxtest.RequirePublishedTx[order](ctx, tb, ob, tx, topic, o)
		}},
		{"RequirePublished", func(tb testing.TB, topic string, o *outboxtest.Opts) {
			outboxtest.RequirePublished[order](ctx, tb, ob, topic, o)
		}},
		{"RequireNotPublishedTx", func(tb testing.TB, topic string, o *outboxtest.Opts) {
			outboxtest.RequireNotPublishedTx(ctx, tb, ob, tx, topic, o)
		}},
		{"RequireNotPublished", func(tb testing.TB, topic string, o *outboxtest.Opts) {
			outboxtest.RequireNotPublished(ctx, tb, ob, topic, o)
		}},
		{"RequirePublishedCountTx", func(tb testing.TB, topic string, o *outboxtest.Opts) {
			outboxtest.RequirePublishedCountTx(ctx, tb, ob, tx, topic, 1, o)
		}},
		{"RequirePublishedCount", func(tb testing.TB, topic string, o *outboxtest.Opts) {
			outboxtest.RequirePublishedCount(ctx, tb, ob, topic, 1, o)
		}},
		{"RequireManyPublishedTx", func(tb testing.TB, topic string, o *outboxtest.Opts) {
			outboxtest.RequireManyPublishedTx(ctx, tb, ob, tx, many(topic, o))
		}},
		{"RequireManyPublished", func(tb testing.TB, topic string, o *outboxtest.Opts) {
			outboxtest.RequireManyPublished(ctx, tb, ob, many(topic, o))
		}},
	}
	long := strings.Repeat("x", 244) + ".placed" // 251 bytes, 256 with "shop."
	cases := []struct {
		name  string
		topic string
		opts  *outboxtest.Opts
		want  []string
	}{
		{"an empty topic", "", nil, []string{"topic is empty"}},
		{"a wildcard", "orders.*", nil, []string{`topic "orders.*" has a wildcard`, "Publish refuses"}},
		{"a # wildcard", "#", nil, []string{`topic "#" has a wildcard`}},
		{"an invalid topic", "orders..placed", nil, []string{`topic "orders..placed" has an empty word`, "Publish refuses"}},
		{"a topic too long with the prefix", long, nil, []string{"256 bytes long with Options.TopicPrefix", "Publish refuses"}},
		{"an unknown status", "orders.placed", &outboxtest.Opts{Status: "scheduled"},
			[]string{`Opts.Status "scheduled" is not a status`, `"Scheduled"`}},
		{"a negative delay", "orders.placed", &outboxtest.Opts{Delay: -time.Minute},
			[]string{"Opts.Delay -1m0s is negative"}},
	}
	for _, a := range assertions {
		for _, c := range cases {
			want := append([]string{"outboxtest: " + a.name}, c.want...)
			if strings.HasPrefix(a.name, "RequireMany") {
				want = append(want, "expected[1]")
			}
			fails(t, a.name+" of "+c.name, func(tb testing.TB) { a.assert(tb, c.topic, c.opts) }, want...)
		}
		// What is fine passes, or fails for what was published.
		passes(t, a.name+" of good arguments", func(tb testing.TB) {
			o := &outboxtest.Opts{Status: storage.StatusScheduled}
			if strings.HasPrefix(a.name, "RequireNotPublished") {
				outboxtest.RequireNotPublished(ctx, tb, ob, "orders.cancelled", o)
				return
			}
			if strings.HasPrefix(a.name, "RequireMany") {
				outboxtest.RequireManyPublished(ctx, tb, ob, []outboxtest.Expected{{Topic: "orders.placed", Opts: o}})
				return
			}
			a.assert(tb, "orders.placed", o)
		})
	}

	fails(t, "RequireManyPublished of nothing", func(tb testing.TB) {
		outboxtest.RequireManyPublished(ctx, tb, ob, nil)
	}, "outboxtest: RequireManyPublished: no message expected")
	fails(t, "RequireManyPublishedTx of nothing", func(tb testing.TB) {
		outboxtest.RequireManyPublishedTx(ctx, tb, ob, tx, nil)
	}, "outboxtest: RequireManyPublishedTx: no message expected")
	fails(t, "RequirePublishedCount of a negative count", func(tb testing.TB) {
		outboxtest.RequirePublishedCount(ctx, tb, ob, "orders.placed", -1, nil)
	}, `outboxtest: RequirePublishedCount("orders.placed")`, "count -1 is negative")
	fails(t, "RequirePublishedCountTx of a negative count", func(tb testing.TB) {
		outboxtest.RequirePublishedCountTx(ctx, tb, ob, tx, "orders.placed", -1, nil)
	}, `outboxtest: RequirePublishedCountTx("orders.placed")`, "count -1 is negative")
}
