package outboxtest_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/outboxtest"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/wire"
)

type order struct {
	ID    int    `json:"id"`
	Label string `json:"label"`
}

func TestSQLite(t *testing.T)   { checkAssertions(t, sqliteEnv(t, outbox.Options{})) }
func TestPostgres(t *testing.T) { checkAssertions(t, postgresEnv(t, outbox.Options{})) }
func TestMySQL(t *testing.T)    { checkAssertions(t, mysqlEnv(t, outbox.Options{})) }

// checkAssertions publishes in a transaction and checks every assertion,
// passing and failing, inside it, after its commit, and after a rollback.
func checkAssertions[TTx any](t *testing.T, e env[TTx]) {
	ctx := context.Background()
	ob := e.ob
	start := time.Now()
	tx, commit, _ := e.begin(t)
	publish := func(topic string, v any, opts ...outbox.PublishOption) {
		t.Helper()
		if _, err := ob.Publish(ctx, tx, topic, v, opts...); err != nil {
			t.Fatal(err)
		}
	}
	publish("orders.placed", order{ID: 7, Label: "seven"}, outbox.WithHeader("tenant", "acme"))
	publish("orders.audit", []byte("first"))
	publish("orders.audit", []byte("second"))
	publish("orders.reminder", order{ID: 7}, outbox.WithDelay(10*time.Minute))

	// Inside the transaction, before its commit.
	passes(t, "RequirePublishedTx", func(tb testing.TB) {
		got := outboxtest.RequirePublishedTx[order](ctx, tb, ob, tx, "orders.placed",
			&outboxtest.Opts{Headers: map[string]string{"tenant": "acme"}, Status: storage.StatusScheduled, Since: start})
		if got != (order{ID: 7, Label: "seven"}) {
			t.Errorf("RequirePublishedTx decoded %+v, want {7 seven}", got)
		}
		if raw := outboxtest.RequirePublishedTx[[]byte](ctx, tb, ob, tx, "orders.placed", nil); string(raw) != `{"id":7,"label":"seven"}` {
			t.Errorf("RequirePublishedTx[[]byte] = %s, want the JSON body", raw)
		}
		outboxtest.RequirePublishedTx[order](ctx, tb, ob, tx, "orders.reminder",
			&outboxtest.Opts{Delay: 10 * time.Minute, Status: storage.StatusDelayed})
		outboxtest.RequireNotPublishedTx(ctx, tb, ob, tx, "orders.cancelled", nil)
		outboxtest.RequireNotPublishedTx(ctx, tb, ob, tx, "orders.placed", &outboxtest.Opts{Headers: map[string]string{"tenant": "other"}})
		audits := outboxtest.RequirePublishedCountTx(ctx, tb, ob, tx, "orders.audit", 2, nil)
		if string(audits[0].Body) != "first" || string(audits[1].Body) != "second" {
			t.Errorf("RequirePublishedCountTx returned %q, %q; want first, second (oldest first)", audits[0].Body, audits[1].Body)
		}
		many := outboxtest.RequireManyPublishedTx(ctx, tb, ob, tx, []outboxtest.Expected{
			{Topic: "orders.placed", Opts: &outboxtest.Opts{Headers: map[string]string{"tenant": "acme"}}},
			{Topic: "orders.audit"},
			{Topic: "orders.audit"},
			{Topic: "orders.reminder", Opts: &outboxtest.Opts{Delay: 10 * time.Minute}},
		})
		if got := outboxtest.Decode[order](tb, ob, many[3]); got.ID != 7 {
			t.Errorf("Decode of the reminder = %+v", got)
		}
		// Committed rows only: none yet.
		outboxtest.RequireNotPublished(ctx, tb, ob, "orders.placed", nil)
	})

	fails(t, "RequirePublishedTx of a topic not published", func(tb testing.TB) {
		outboxtest.RequirePublishedTx[order](ctx, tb, ob, tx, "orders.cancelled", nil)
	}, `no message published to "orders.cancelled"`, `"orders.reminder"`, `"orders.placed"`)
	fails(t, "RequirePublishedTx of a topic published twice", func(tb testing.TB) {
		outboxtest.RequirePublishedTx[[]byte](ctx, tb, ob, tx, "orders.audit", nil)
	}, `2 messages published to "orders.audit", want one`, `body "first"`, `body "second"`)
	fails(t, "RequirePublishedTx with another header", func(tb testing.TB) {
		outboxtest.RequirePublishedTx[order](ctx, tb, ob, tx, "orders.placed", &outboxtest.Opts{Headers: map[string]string{"tenant": "other"}})
	}, `no message published to "orders.placed" with header tenant="other"`, `header tenant="acme" (want "other")`)
	fails(t, "RequirePublishedTx with another delay", func(tb testing.TB) {
		outboxtest.RequirePublishedTx[order](ctx, tb, ob, tx, "orders.reminder", &outboxtest.Opts{Delay: time.Minute})
	}, `delay 00:10:00 (want 00:01:00)`)
	fails(t, "RequirePublishedTx of a message not delayed", func(tb testing.TB) {
		outboxtest.RequirePublishedTx[order](ctx, tb, ob, tx, "orders.placed", &outboxtest.Opts{Delay: time.Minute})
	}, `not delayed (want delay 00:01:00)`)
	fails(t, "RequirePublishedTx with another status", func(tb testing.TB) {
		outboxtest.RequirePublishedTx[order](ctx, tb, ob, tx, "orders.reminder", &outboxtest.Opts{Status: storage.StatusScheduled})
	}, `status Delayed (want Scheduled)`)
	fails(t, "RequirePublishedTx since later", func(tb testing.TB) {
		outboxtest.RequirePublishedTx[order](ctx, tb, ob, tx, "orders.placed", &outboxtest.Opts{Since: time.Now().Add(time.Hour)})
	}, `no message published to "orders.placed" since`)
	fails(t, "RequirePublishedTx into the wrong type", func(tb testing.TB) {
		outboxtest.RequirePublishedTx[int](ctx, tb, ob, tx, "orders.placed", nil)
	}, `decoding message`, `"orders.placed" into int`)
	fails(t, "RequireNotPublishedTx of a published topic", func(tb testing.TB) {
		outboxtest.RequireNotPublishedTx(ctx, tb, ob, tx, "orders.placed", nil)
	}, `1 messages published to "orders.placed", want none`, `headers {tenant="acme"}`)
	fails(t, "RequirePublishedCountTx of another count", func(tb testing.TB) {
		outboxtest.RequirePublishedCountTx(ctx, tb, ob, tx, "orders.audit", 3, nil)
	}, `2 messages published to "orders.audit", want 3`)
	fails(t, "RequirePublishedCountTx of a topic not published", func(tb testing.TB) {
		outboxtest.RequirePublishedCountTx(ctx, tb, ob, tx, "orders.cancelled", 1, nil)
	}, `want 1, found none`, `no message published to "orders.cancelled"`)
	fails(t, "RequireManyPublishedTx in another order", func(tb testing.TB) {
		outboxtest.RequireManyPublishedTx(ctx, tb, ob, tx, []outboxtest.Expected{
			{Topic: "orders.audit"}, {Topic: "orders.placed"}, {Topic: "orders.audit"},
		})
	}, `published topics ["orders.placed" "orders.audit" "orders.audit"], want ["orders.audit" "orders.placed" "orders.audit"]`)
	fails(t, "RequireManyPublishedTx of one message fewer", func(tb testing.TB) {
		outboxtest.RequireManyPublishedTx(ctx, tb, ob, tx, []outboxtest.Expected{{Topic: "orders.audit"}})
	}, `published topics ["orders.audit" "orders.audit"], want ["orders.audit"]`)
	fails(t, "RequireManyPublishedTx with another header", func(tb testing.TB) {
		outboxtest.RequireManyPublishedTx(ctx, tb, ob, tx, []outboxtest.Expected{
			{Topic: "orders.placed", Opts: &outboxtest.Opts{Headers: map[string]string{wire.CorrelationID: "x"}}},
		})
	}, `[0] message`, `header cap-corr-id=`, `(want "x")`)

	if err := commit(); err != nil {
		t.Fatal(err)
	}
	// After the commit, through the store.
	passes(t, "RequirePublished", func(tb testing.TB) {
		got := outboxtest.RequirePublished[order](ctx, tb, ob, "orders.placed", &outboxtest.Opts{Since: start})
		if got.ID != 7 {
			t.Errorf("RequirePublished decoded %+v", got)
		}
		outboxtest.RequirePublishedCount(ctx, tb, ob, "orders.audit", 2, &outboxtest.Opts{Status: storage.StatusScheduled})
		outboxtest.RequireManyPublished(ctx, tb, ob, []outboxtest.Expected{{Topic: "orders.placed"}, {Topic: "orders.reminder"}})
		outboxtest.RequireNotPublished(ctx, tb, ob, "orders.placed", &outboxtest.Opts{Since: time.Now().Add(time.Hour)})
	})
	fails(t, "RequireNotPublished after the commit", func(tb testing.TB) {
		outboxtest.RequireNotPublished(ctx, tb, ob, "orders.reminder", nil)
	}, `1 messages published to "orders.reminder", want none`, `delay 00:10:00`)

	// A rolled-back transaction published nothing.
	tx, _, rollback := e.begin(t)
	if _, err := ob.Publish(ctx, tx, "orders.refund", order{ID: 8}); err != nil {
		t.Fatal(err)
	}
	passes(t, "RequirePublishedTx before the rollback", func(tb testing.TB) {
		outboxtest.RequirePublishedTx[order](ctx, tb, ob, tx, "orders.refund", nil)
	})
	if err := rollback(); err != nil {
		t.Fatal(err)
	}
	tx, _, _ = e.begin(t)
	passes(t, "RequireNotPublishedTx after the rollback", func(tb testing.TB) {
		outboxtest.RequireNotPublishedTx(ctx, tb, ob, tx, "orders.refund", nil)
		outboxtest.RequirePublishedCountTx(ctx, tb, ob, tx, "orders.audit", 2, nil)
	})
}

// noTxRead is a storage that cannot read inside a transaction.
type noTxRead struct{ storage.Driver[*sql.Tx] }

func TestStorageWithoutTxReader(t *testing.T) {
	e := sqliteEnv(t, outbox.Options{})
	ob := newOutbox(t, storage.Driver[*sql.Tx](noTxRead{e.ob.Store().(storage.Driver[*sql.Tx])}), outbox.Options{})
	tx, _, _ := e.begin(t)
	fails(t, "RequirePublishedTx without a TxReader", func(tb testing.TB) {
		outboxtest.RequirePublishedTx[order](context.Background(), tb, ob, tx, "orders.placed", nil)
	}, `RequirePublishedTx("orders.placed")`, `outboxtest_test.noTxRead cannot read inside a transaction of type *sql.Tx`, `storage.TxReader`)
}
