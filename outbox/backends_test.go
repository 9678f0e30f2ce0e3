package outbox_test

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/postgres"
	"github.com/gocap/gocap/wire"
)

func hostPort(t *testing.T, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// postgresBackend puts each test in a schema of its own.
var postgresBackend = backend[pgx.Tx]{
	name: "postgres",
	open: func(t *testing.T) dbEnv[pgx.Tx] {
		dsn := testenv.PostgresURL(t)
		schema := testenv.Name("gocap_ob")
		pool := pgPool(t, dsn)
		d := postgres.New(pool, postgres.Options{Schema: schema, Logger: quietLogger()})
		if err := d.Migrate(context.Background()); err != nil {
			t.Fatalf("migrate: %v", err)
		}
		if _, err := pool.Exec(context.Background(), "create table "+schema+".orders (note text)"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			p, err := pgxpool.New(context.Background(), dsn)
			if err == nil {
				p.Exec(context.Background(), "drop schema "+schema+" cascade")
				p.Close()
			}
		})
		return dbEnv[pgx.Tx]{
			name: schema,
			dsn:  dsn,
			driver: func(t *testing.T) storage.Driver[pgx.Tx] {
				return postgres.New(pgPool(t, dsn), postgres.Options{Schema: schema, Logger: quietLogger()})
			},
			begin: func(t *testing.T) (pgx.Tx, func() error, func() error) {
				ctx := context.Background()
				tx, err := pool.Begin(ctx)
				if err != nil {
					t.Fatalf("begin: %v", err)
				}
				t.Cleanup(func() { tx.Rollback(ctx) })
				return tx, func() error { return tx.Commit(ctx) }, func() error { return tx.Rollback(ctx) }
			},
			exec: func(t *testing.T, tx pgx.Tx, note string) {
				if _, err := tx.Exec(context.Background(), "insert into "+schema+".orders (note) values ($1)", note); err != nil {
					t.Fatal(err)
				}
			},
		}
	},
	attach: func(dsn, name string) (storage.Driver[pgx.Tx], func(), error) {
		pool, err := pgxpool.New(context.Background(), dsn)
		if err != nil {
			return nil, nil, err
		}
		return postgres.New(pool, postgres.Options{Schema: name, Logger: quietLogger()}), pool.Close, nil
	},
}

func pgPool(t *testing.T, dsn string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatalf("pgxpool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func TestPostgres(t *testing.T) { runCore(t, postgresBackend) }

// TestPostgresCoalescedNotify checks that a commit whose NOTIFY was
// coalesced into an earlier one is still sent promptly: the processor
// polls every Options.NotifyInterval after a notification. The poll interval is an
// hour, so only that can find it.
func TestPostgresCoalescedNotify(t *testing.T) {
	url := testenv.AMQPURL(t)
	env := postgresBackend.open(t)
	const interval = 500 * time.Millisecond
	pool := pgPool(t, env.dsn)
	d := postgres.New(pool, postgres.Options{Schema: env.name, Logger: quietLogger()})
	b := newBroker(t, url)
	tr := b.transport(t, url)
	ob := newOutbox(t, d, tr, outbox.Options{PollInterval: time.Hour, NotifyInterval: interval})
	run(t, ob)
	ctx := context.Background()

	// Until the processor listens, a notification is lost: probe with an
	// outbox on a driver that always notifies, until a probe arrives.
	probe := newOutbox(t, postgres.New(pool, postgres.Options{Schema: env.name, Logger: quietLogger()}),
		tr, outbox.Options{NotifyInterval: -1})
	for i := 0; ; i++ {
		if _, err := probe.PublishWithoutTx(ctx, "probe", []byte("p")); err != nil {
			t.Fatal(err)
		}
		select {
		case <-b.got:
		case <-time.After(200 * time.Millisecond):
			if i == 50 {
				t.Fatal("no probe arrived: the processor does not hear notifications")
			}
			continue
		}
		break
	}
	for drained := false; !drained; {
		select {
		case <-b.got:
		case <-time.After(300 * time.Millisecond):
			drained = true
		}
	}

	publish := func(note string) int64 {
		t.Helper()
		var id int64
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			var err error
			id, err = ob.Publish(ctx, tx, "order.paid", orderPaid{Amount: note})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	arrives := func(id int64, within time.Duration) {
		t.Helper()
		m := b.next(t, within)
		if got := fmt.Sprint(m.Headers[wire.MsgID]); got != strconv.FormatInt(id, 10) {
			t.Fatalf("message %s arrived, want %d", got, id)
		}
	}
	start := time.Now()
	arrives(publish("notifies"), 5*time.Second)
	second := publish("coalesced")
	if time.Since(start) >= interval {
		t.Fatalf("the first message took %v to arrive; the second was not within NotifyInterval %v", time.Since(start), interval)
	}
	arrives(second, 5*time.Second)
}
