package mysql_test

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/mysql"
	"github.com/gocap/gocap/storage/storagetest"
)

// openWithParams opens the test database with params (if any) added to
// its DSN; the pool is closed when the test ends.
func openWithParams(t testing.TB, params string) *sql.DB {
	t.Helper()
	dsn := testenv.MySQLDSN(t)
	switch {
	case params == "":
	case strings.Contains(dsn, "?"):
		dsn += "&" + params
	default:
		dsn += "?" + params
	}
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// driverWithParams returns a migrated driver on tables of its own, on a
// connection pool whose DSN has params appended (for example
// "parseTime=true&loc=Asia%2FTokyo").
func driverWithParams(t testing.TB, params string) (*mysql.Driver, *sql.DB, string) {
	t.Helper()
	db := openWithParams(t, params)
	prefix := testenv.Name("gocap_rb") + "_"
	t.Cleanup(func() { // before openWithParams's Close
		for _, tb := range []string{"published", "received", "instances"} {
			db.Exec("DROP TABLE IF EXISTS `" + prefix + tb + "`")
		}
	})
	d := mysql.New(db, mysql.Options{TablePrefix: prefix})
	if err := d.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return d, db, prefix
}

var gen = func() *ids.Generator { g, _ := ids.NewGenerator(-1); return g }()

func pubMsg(name string, at time.Time) *storage.Message {
	id := gen.Next()
	return &storage.Message{
		ID: id, Kind: storage.Published, MsgID: strconv.FormatInt(id, 10), Name: name,
		Headers: map[string]string{"cap-msg-id": strconv.FormatInt(id, 10)}, Body: []byte(`{"x":1}`),
		Status: storage.StatusScheduled, Added: at, NextAttemptAt: at,
	}
}

// The stored times are UTC whatever the DSN's parseTime and loc say.
func TestTimesIndependentOfDSN(t *testing.T) {
	at := time.Date(2026, 3, 29, 1, 30, 0, 123456000, time.UTC) // around a DST change in Europe
	for _, params := range []string{"", "parseTime=true", "parseTime=true&loc=Asia%2FTokyo", "loc=America%2FNew_York", "interpolateParams=true&parseTime=true&loc=Local"} {
		t.Run(params, func(t *testing.T) {
			d, db, prefix := driverWithParams(t, params)
			m := pubMsg("tz", at)
			if err := d.InsertPublished(context.Background(), []*storage.Message{m}, storage.InsertOptions{}); err != nil {
				t.Fatal(err)
			}
			got, err := d.Get(context.Background(), storage.Published, m.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Added.Equal(at) || got.Added.Location() != time.UTC {
				t.Errorf("Added = %v, want %v in UTC", got.Added, at)
			}
			// What the column holds is the UTC wall clock.
			var raw string
			if err := db.QueryRow("SELECT CAST(added AS CHAR) FROM `"+prefix+"published` WHERE id = ?", m.ID).Scan(&raw); err != nil {
				t.Fatal(err)
			}
			if raw != "2026-03-29 01:30:00.123456" {
				t.Errorf("stored %q, want the UTC wall clock", raw)
			}
		})
	}
}

// A failure message longer than a TEXT column or with invalid UTF-8 must
// still be recorded: if Fail errors, the retry count never grows and the
// row is retried forever.
func TestFailWithLongOrInvalidError(t *testing.T) {
	d, _, _ := driverWithParams(t, "")
	ctx := context.Background()
	t0 := time.Now().UTC().Truncate(time.Microsecond)
	for _, text := range []string{strings.Repeat("é", 70_000), "bad \xff\xfe utf-8"} {
		m := pubMsg("longerr", t0.Add(-time.Second))
		if err := d.InsertPublished(ctx, []*storage.Message{m}, storage.InsertOptions{}); err != nil {
			t.Fatal(err)
		}
		c, err := d.Claim(ctx, storage.Published, storage.ClaimRequest{Now: t0, LeaseUntil: t0.Add(time.Minute), Token: ids.Token(), Limit: 1})
		if err != nil || len(c) != 1 {
			t.Fatalf("claim: %d rows, %v", len(c), err)
		}
		res, err := d.Fail(ctx, storage.Published, storage.Lease{ID: c[0].ID, Token: c[0].LeaseToken},
			storage.Failure{Error: text, Now: t0, NextAttemptAt: t0.Add(time.Hour), MaxAttempts: 50, ExpiresAt: t0.Add(time.Hour)})
		if err != nil {
			t.Errorf("Fail with a %d-byte error text: %v", len(text), err)
			continue
		}
		if res.Retries != 1 {
			t.Errorf("retries %d, want 1", res.Retries)
		}
	}
}

// Content search must work whatever the session's sql_mode, including
// NO_BACKSLASH_ESCAPES (where '\\' is two characters).
func TestListContentWithNoBackslashEscapes(t *testing.T) {
	d, _, _ := driverWithParams(t, "sql_mode=%27STRICT_TRANS_TABLES,NO_BACKSLASH_ESCAPES%27")
	ctx := context.Background()
	m := pubMsg("like", time.Now().UTC())
	m.Body = []byte(`{"note":"100% _off_ \ back"}`)
	other := pubMsg("like", time.Now().UTC())
	other.Body = []byte(`{"note":"100 off"}`)
	if err := d.InsertPublished(ctx, []*storage.Message{m, other}, storage.InsertOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"100% _off_", `\ back`} {
		rows, err := d.List(ctx, storage.Filter{Kind: storage.Published, Content: q})
		if err != nil {
			t.Errorf("List(Content %q): %v", q, err)
			continue
		}
		if len(rows) != 1 || rows[0].ID != m.ID {
			t.Errorf("List(Content %q): %d rows, want only %d", q, len(rows), m.ID)
		}
	}
}

// Concurrent deliveries of one message to one group: exactly one caller
// holds the lease, and none errors.
func TestInsertReceivedConcurrentDuplicates(t *testing.T) {
	d, _, _ := driverWithParams(t, "")
	ctx := context.Background()
	const rounds, callers = 20, 6
	for r := range rounds {
		msgID := "dup-" + strconv.Itoa(r)
		var wg sync.WaitGroup
		var mu sync.Mutex
		claimed, errs := 0, []error{}
		for range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				m := &storage.Message{ID: gen.Next(), Kind: storage.Received, MsgID: msgID, Group: "g", Name: "n",
					Headers: map[string]string{}, Body: []byte("b"), Added: time.Now().UTC()}
				res, err := d.InsertReceived(ctx, m, ids.Token(), time.Now().UTC().Add(time.Minute))
				ok := res.Claimed
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
				}
				if ok {
					claimed++
				}
			}()
		}
		wg.Wait()
		for _, err := range errs {
			t.Errorf("round %d: InsertReceived: %v", r, err)
		}
		if claimed != 1 {
			t.Errorf("round %d: %d callers hold the lease, want 1", r, claimed)
		}
	}
}

// A received message whose id is that of a stored row of another message
// is not stored: ON DUPLICATE KEY UPDATE meets the primary key, not the
// (msg_id, grp) key, and leaves the other row alone (it is not Failed).
// InsertReceived and InsertReceivedBatch report it as a permanent error,
// whether they read the row back with a SELECT or (MariaDB) with the
// INSERT's RETURNING; the batch stores none of its rows.
func TestInsertReceivedIDOfAnotherRow(t *testing.T) {
	d, db, prefix := driverWithParams(t, "")
	ctx := context.Background()
	rec := func(id int64, msgID string) *storage.Message {
		return &storage.Message{ID: id, Kind: storage.Received, MsgID: msgID, Group: "g", Name: "n",
			Headers: map[string]string{}, Body: []byte("b"), Added: time.Now().UTC()}
	}
	stored := rec(gen.Next(), "first")
	token := ids.Token()
	if res, err := d.InsertReceived(ctx, stored, token, time.Now().UTC().Add(time.Minute)); err != nil || !res.Claimed {
		t.Fatalf("storing the first message: %+v, %v", res, err)
	}
	if _, err := d.InsertReceived(ctx, rec(stored.ID, "second"), ids.Token(), time.Now().UTC().Add(time.Minute)); !errors.Is(err, storage.ErrPermanent) {
		t.Errorf("InsertReceived with the id of another row: %v, want a permanent error", err)
	}
	other := rec(gen.Next(), "third")
	_, err := d.InsertReceivedBatch(ctx, []*storage.Message{other, rec(stored.ID, "second")}, ids.Token(), time.Now().UTC().Add(time.Minute))
	if !errors.Is(err, storage.ErrPermanent) {
		t.Errorf("InsertReceivedBatch with the id of another row: %v, want a permanent error", err)
	}
	var n int
	var tok int64
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*), MAX(lease_token) FROM `"+prefix+"received`").Scan(&n, &tok); err != nil {
		t.Fatal(err)
	}
	if n != 1 || tok != token {
		t.Errorf("%d rows stored, the first one's token %d; want 1 row, token %d", n, tok, token)
	}
}

// A batch of received messages larger than one INSERT (1,000 rows) is
// stored in several, in one transaction, each read back (MariaDB: by its
// RETURNING): a message stored before and a duplicate of a message in an
// earlier statement of the batch are not claimed, every other one is.
func TestInsertReceivedBatchOverSeveralStatements(t *testing.T) {
	d, db, prefix := driverWithParams(t, "")
	ctx := context.Background()
	rec := func(msgID string) *storage.Message {
		return &storage.Message{ID: gen.Next(), Kind: storage.Received, MsgID: msgID, Group: "g", Name: "n",
			Headers: map[string]string{}, Body: []byte("b"), Added: time.Now().UTC()}
	}
	if res, err := d.InsertReceived(ctx, rec("before"), ids.Token(), time.Now().UTC().Add(time.Minute)); err != nil || !res.Claimed {
		t.Fatalf("storing a message before the batch: %+v, %v", res, err)
	}
	const n = 2300
	msgs := make([]*storage.Message, n)
	for i := range msgs {
		msgs[i] = rec("m-" + strconv.Itoa(i))
	}
	msgs[1500] = rec("m-5") // a duplicate of a row of the first statement
	msgs[2200] = rec("before")
	res, err := d.InsertReceivedBatch(ctx, msgs, ids.Token(), time.Now().UTC().Add(time.Minute))
	if err != nil || len(res) != n {
		t.Fatalf("InsertReceivedBatch: %d results, %v", len(res), err)
	}
	for i, r := range res {
		if want := i != 1500 && i != 2200; r.Claimed != want || r.Queued || r.Reset {
			t.Errorf("message %d (%s): %+v, want claimed %v", i, msgs[i].MsgID, r, want)
		}
		if r.Claimed && r.ID != msgs[i].ID {
			t.Errorf("message %d: id %d, want %d", i, r.ID, msgs[i].ID)
		}
	}
	var stored int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM `"+prefix+"received`").Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != n-1 {
		t.Errorf("%d rows stored, want %d", stored, n-1)
	}
}

// Claims and publishes running at the same time must not fail with lock
// errors (deadlocks, lock wait timeouts) nor hand a row out twice.
func TestClaimWhilePublishing(t *testing.T) {
	d, db, _ := driverWithParams(t, "")
	ctx := context.Background()
	const publishers, perPublisher, claimers = 3, 60, 3
	var wg sync.WaitGroup
	errc := make(chan error, publishers+claimers)
	done := make(chan struct{})
	for range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perPublisher {
				tx, err := db.BeginTx(ctx, nil)
				if err != nil {
					errc <- err
					return
				}
				if err := d.InsertPublishedTx(ctx, tx, []*storage.Message{pubMsg("pc", time.Now().UTC())}, storage.InsertOptions{}); err != nil {
					tx.Rollback()
					errc <- err
					return
				}
				if err := tx.Commit(); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	var mu sync.Mutex
	seen := map[int64]int{}
	var cwg sync.WaitGroup
	for range claimers {
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			for i := 0; i < 10_000; i++ { // bounded; ends when publishing is over and nothing is left
				now := time.Now().UTC()
				got, err := d.Claim(ctx, storage.Published, storage.ClaimRequest{Now: now, LeaseUntil: now.Add(time.Hour), Token: ids.Token(), Limit: 5})
				if err != nil {
					errc <- err
					return
				}
				mu.Lock()
				for _, m := range got {
					seen[m.ID]++
				}
				mu.Unlock()
				if len(got) == 0 {
					select {
					case <-done:
						return
					case <-time.After(2 * time.Millisecond):
					}
				}
			}
		}()
	}
	wg.Wait()
	close(done)
	cwg.Wait()
	close(errc)
	for err := range errc {
		t.Errorf("concurrent publish/claim: %v", err)
	}
	// Whatever a claimer missed at the very end is still claimable.
	now := time.Now().UTC().Add(time.Second)
	rest, err := d.Claim(ctx, storage.Published, storage.ClaimRequest{Now: now, LeaseUntil: now.Add(time.Hour), Token: ids.Token(), Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range rest {
		seen[m.ID]++
	}
	if len(seen) != publishers*perPublisher {
		t.Errorf("claimed %d distinct rows, want %d", len(seen), publishers*perPublisher)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("row %d claimed %d times", id, n)
		}
	}
}

// The whole suite again, migration included, on a session with the
// sql_mode flags that change how SQL text is read (NO_BACKSLASH_ESCAPES,
// ANSI_QUOTES, PIPES_AS_CONCAT; MariaDB's SIMULTANEOUS_ASSIGNMENT, where
// UPDATE assignments all see the old row) or reject more (strict modes,
// ONLY_FULL_GROUP_BY as on MySQL 8), and a DSN that parses times in a zone
// far from UTC.
func TestConformanceOtherSessionSettings(t *testing.T) {
	mode := "STRICT_ALL_TABLES,NO_BACKSLASH_ESCAPES,ANSI_QUOTES,ONLY_FULL_GROUP_BY,NO_ZERO_DATE,NO_ZERO_IN_DATE,ERROR_FOR_DIVISION_BY_ZERO,PIPES_AS_CONCAT"
	if v := serverVersion(t); strings.Contains(strings.ToLower(v), "mariadb") {
		mode += ",SIMULTANEOUS_ASSIGNMENT"
	}
	params := "parseTime=true&loc=Asia%2FTokyo&sql_mode=%27" + strings.ReplaceAll(mode, ",", "%2C") + "%27"
	dbs := map[storage.Driver[*sql.Tx]]*sql.DB{}
	storagetest.Run(t, storagetest.Harness[*sql.Tx]{
		New: func(t *testing.T) storage.Driver[*sql.Tx] {
			d, db, _ := driverWithParams(t, params)
			dbs[d] = db
			return d
		},
		Begin: func(ctx context.Context, t *testing.T, d storage.Driver[*sql.Tx]) (*sql.Tx, func() error, func() error) {
			tx, err := dbs[d].BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			return tx, tx.Commit, tx.Rollback
		},
	})
}

func serverVersion(t *testing.T) string {
	t.Helper()
	db, err := sql.Open("mysql", testenv.MySQLDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v string
	if err := db.QueryRow("SELECT VERSION()").Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// A batch larger than one statement can carry (65,535 placeholders, or
// max_allowed_packet) is split, and stays atomic.
func TestInsertPublishedLargeBatch(t *testing.T) {
	d, db, prefix := driverWithParams(t, "")
	ctx := context.Background()
	now := time.Now().UTC()
	const n = 12_000 // 72,000 placeholders in a single statement
	msgs := make([]*storage.Message, n)
	for i := range msgs {
		msgs[i] = pubMsg("batch", now)
	}
	if err := d.InsertPublished(ctx, msgs, storage.InsertOptions{}); err != nil {
		t.Fatalf("InsertPublished of %d messages: %v", n, err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	more := make([]*storage.Message, n)
	for i := range more {
		more[i] = pubMsg("batch", now)
	}
	if err := d.InsertPublishedTx(ctx, tx, more, storage.InsertOptions{}); err != nil {
		t.Fatalf("InsertPublishedTx of %d messages: %v", n, err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	var count int
	if err := db.QueryRow("SELECT COUNT(*) FROM `" + prefix + "published`").Scan(&count); err != nil {
		t.Fatal(err)
	}
	if count != n {
		t.Errorf("%d rows, want %d (the rolled back batch must leave none)", count, n)
	}
}

// The server version is read before the first claim; if that read fails
// (here: a cancelled context, as when processors start while the database
// is down) it is tried again, from any number of goroutines at once.
func TestClaimRetriesVersionRead(t *testing.T) {
	d, _, _ := driverWithParams(t, "")
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	now := time.Now().UTC()
	req := storage.ClaimRequest{Now: now, LeaseUntil: now.Add(time.Minute), Token: ids.Token(), Limit: 1}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				d.Claim(cancelled, storage.Published, req) // fails: ctx is cancelled
			}
		}()
	}
	wg.Wait()
	if _, err := d.Claim(context.Background(), storage.Published, req); err != nil {
		t.Fatalf("Claim after failed version reads: %v", err)
	}
}
