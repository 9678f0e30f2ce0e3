package postgres_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/postgres"
)

// TestBookkeepingSynchronousCommit checks, with triggers that record the
// synchronous_commit setting each write statement runs under, that
// Claim (with its ordering keys' second check), Fail, FailBatch, Release
// and Succeed run with it off, and the inserts with the server's setting; with
// Options.DurableBookkeeping, all of them with the server's setting; and
// that the setting does not outlive the statement's transaction on the
// pool's one connection.
func TestBookkeepingSynchronousCommit(t *testing.T) {
	for _, durable := range []bool{false, true} {
		t.Run(map[bool]string{false: "default", true: "DurableBookkeeping"}[durable], func(t *testing.T) {
			testBookkeepingSetting(t, durable)
		})
	}
}

func testBookkeepingSetting(t *testing.T, durable bool) {
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(testenv.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 1 // every statement on one connection: a leaked setting would show
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	schema := testenv.Name("gocap_sc")
	t.Cleanup(func() {
		pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
		pool.Close()
	})
	var server string
	if err := pool.QueryRow(ctx, "SHOW synchronous_commit").Scan(&server); err != nil {
		t.Fatal(err)
	}
	if server == "off" {
		t.Skip("the server runs with synchronous_commit off: nothing to tell apart")
	}
	d := postgres.New(pool, postgres.Options{Schema: schema, DurableBookkeeping: durable})
	if err := d.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	// One row per write statement on either table: the setting it ran under.
	_, err = pool.Exec(ctx, `CREATE TABLE `+schema+`.sync_log (seq bigserial PRIMARY KEY, tbl text, op text, setting text);
		CREATE FUNCTION `+schema+`.log_sync() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			INSERT INTO `+schema+`.sync_log (tbl, op, setting) VALUES (TG_TABLE_NAME, TG_OP, current_setting('synchronous_commit'));
			RETURN NULL;
		END $$;
		CREATE TRIGGER log_sync AFTER INSERT OR UPDATE ON `+schema+`.published FOR EACH STATEMENT EXECUTE FUNCTION `+schema+`.log_sync();
		CREATE TRIGGER log_sync AFTER INSERT OR UPDATE ON `+schema+`.received FOR EACH STATEMENT EXECUTE FUNCTION `+schema+`.log_sync();`)
	if err != nil {
		t.Fatal(err)
	}
	book := "off"
	if durable {
		book = server
	}
	// expect checks the statements logged since the last call: their
	// tables and operations, each under want.
	expect := func(step, want string, stmts ...string) {
		t.Helper()
		rows, err := pool.Query(ctx, `DELETE FROM `+schema+`.sync_log RETURNING seq, tbl || ' ' || op, setting`)
		if err != nil {
			t.Fatal(err)
		}
		type entry struct {
			Seq         int64
			Stmt, Value string
		}
		got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[entry])
		if err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(got, func(a, b entry) int { return int(a.Seq - b.Seq) })
		var names []string
		for _, e := range got {
			names = append(names, e.Stmt)
			if e.Value != want {
				t.Errorf("%s: %s ran with synchronous_commit = %s, want %s", step, e.Stmt, e.Value, want)
			}
		}
		if !slices.Equal(names, stmts) {
			t.Errorf("%s: statements %q, want %q", step, names, stmts)
		}
	}
	now := time.Now().UTC()
	msg := func(id int64, key string) *storage.Message {
		return &storage.Message{ID: id, Name: "n", Headers: map[string]string{}, Body: []byte("x"), Added: now, NextAttemptAt: now, OrderingKey: key}
	}
	claim := func(step string, want int) []*storage.Message {
		t.Helper()
		at := time.Now().UTC()
		ms, err := d.Claim(ctx, storage.Published, storage.ClaimRequest{Now: at, LeaseUntil: at.Add(time.Minute), Token: at.UnixNano(), Limit: 10})
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if len(ms) != want {
			t.Fatalf("%s: claimed %d rows, want %d", step, len(ms), want)
		}
		return ms
	}
	lease := func(m *storage.Message) storage.Lease { return storage.Lease{ID: m.ID, Token: m.LeaseToken} }

	if err := d.InsertPublished(ctx, []*storage.Message{msg(1, "")}, storage.InsertOptions{}); err != nil {
		t.Fatal(err)
	}
	expect("InsertPublished", server, "published INSERT")
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		return d.InsertPublishedTx(ctx, tx, []*storage.Message{msg(2, "")}, storage.InsertOptions{Notify: true})
	}); err != nil {
		t.Fatal(err)
	}
	expect("InsertPublishedTx", server, "published INSERT")

	ms := claim("Claim", 2)
	expect("Claim", book, "published UPDATE")
	res, err := d.Fail(ctx, storage.Published, lease(ms[0]), storage.Failure{Error: "e", Now: now, NextAttemptAt: now, ExpiresAt: now.Add(time.Hour)})
	if err != nil || res.Status != storage.StatusScheduled {
		t.Fatalf("Fail: %+v, %v", res, err)
	}
	expect("Fail", book, "published UPDATE")
	if n, err := d.Release(ctx, storage.Published, []storage.Lease{lease(ms[1])}, now, "r"); n != 1 || err != nil {
		t.Fatalf("Release: %d, %v", n, err)
	}
	expect("Release", book, "published UPDATE")
	ms = claim("Claim again", 2)
	expect("Claim again", book, "published UPDATE")
	done := []storage.Completed{{Lease: lease(ms[0])}, {Lease: lease(ms[1])}}
	if n, err := d.Succeed(ctx, storage.Published, done, now.Add(time.Hour)); n != 2 || err != nil {
		t.Fatalf("Succeed: %d, %v", n, err)
	}
	expect("Succeed", book, "published UPDATE")
	if err := d.InsertPublished(ctx, []*storage.Message{msg(5, "")}, storage.InsertOptions{}); err != nil {
		t.Fatal(err)
	}
	expect("InsertPublished for FailBatch", server, "published INSERT")
	ms = claim("Claim for FailBatch", 1)
	expect("Claim for FailBatch", book, "published UPDATE")
	out, err := d.FailBatch(ctx, storage.Published, []storage.FailedAttempt{{Lease: lease(ms[0]),
		Failure: storage.Failure{Error: "e", Now: now, Permanent: true, ExpiresAt: now.Add(time.Hour)}}})
	if err != nil || len(out) != 1 || out[0].LeaseLost {
		t.Fatalf("FailBatch: %+v, %v", out, err)
	}
	expect("FailBatch", book, "published UPDATE")

	// A keyed row: the claim checks its key again under the key's lock.
	if err := d.InsertPublished(ctx, []*storage.Message{msg(3, "k")}, storage.InsertOptions{}); err != nil {
		t.Fatal(err)
	}
	expect("InsertPublished keyed", server, "published INSERT")
	claim("Claim keyed", 1)
	expect("Claim keyed", book, "published UPDATE", "published UPDATE")

	r := msg(4, "")
	r.Kind, r.MsgID, r.Group = storage.Received, "m4", "g"
	if _, err := d.InsertReceived(ctx, r, 7, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	expect("InsertReceived", server, "received UPDATE", "received INSERT") // ON CONFLICT DO UPDATE fires both

	var after string
	if err := pool.QueryRow(ctx, "SHOW synchronous_commit").Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after != server {
		t.Errorf("synchronous_commit on the pool's connection after the bookkeeping = %s, want the server's %s", after, server)
	}
}
