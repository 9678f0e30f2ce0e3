package mysql

import (
	"context"
	"database/sql"
	"strconv"
	"sync"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/storage"
)

func TestSupportsSkipLocked(t *testing.T) {
	for v, want := range map[string]bool{
		"10.11.19-MariaDB-0+deb12u1": true,
		"10.6.0-MariaDB":             true,
		"10.5.23-MariaDB-log":        false,
		"5.5.5-10.4.1-MariaDB":       false, // old MariaDB behind the 5.5.5- replication prefix
		"11.4.2-MariaDB":             true,
		"8.0.36":                     true,
		"8.0.1":                      true,
		"8.0.0-dmr":                  false,
		"5.7.44-log":                 false,
		"9.1.0":                      true,
	} {
		if got := supportsSkipLocked(v); got != want {
			t.Errorf("supportsSkipLocked(%q) = %v, want %v", v, got, want)
		}
	}
}

// On a server without SKIP LOCKED, claims use a plain FOR UPDATE: claimers
// wait for each other, and still never get the same row.
func TestClaimWithoutSkipLocked(t *testing.T) {
	db, err := sql.Open("mysql", testenv.MySQLDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	prefix := testenv.Name("gocap_fb") + "_"
	t.Cleanup(func() {
		for _, tb := range []string{"published", "received", "instances"} {
			db.Exec("DROP TABLE IF EXISTS `" + prefix + tb + "`")
		}
		db.Close()
	})
	d := New(db, Options{TablePrefix: prefix})
	d.versionRead = true // as if VERSION() said 5.7: no SKIP LOCKED
	ctx := context.Background()
	if err := d.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if lock, err := d.lockClause(ctx); err != nil || lock != "" {
		t.Fatalf("lock clause %q, %v; want the fallback", lock, err)
	}
	gen, _ := ids.NewGenerator(-1)
	t0 := time.Now().UTC().Truncate(time.Microsecond)
	const n = 200
	var msgs []*storage.Message
	for range n {
		id := gen.Next()
		msgs = append(msgs, &storage.Message{ID: id, MsgID: strconv.FormatInt(id, 10), Name: "fb",
			Headers: map[string]string{}, Body: []byte("x"), Added: t0.Add(-time.Second), NextAttemptAt: t0.Add(-time.Second)})
	}
	if err := d.InsertPublished(ctx, msgs, storage.InsertOptions{}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[int64]int{}
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n { // bounded: each round claims a row or stops
				got, err := d.Claim(ctx, storage.Published, storage.ClaimRequest{Now: t0, LeaseUntil: t0.Add(time.Minute), Token: ids.Token(), Limit: 5})
				if err != nil {
					errs <- err
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, m := range got {
					seen[m.ID]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Claim without SKIP LOCKED: %v", err)
	}
	if len(seen) != n {
		t.Errorf("claimed %d distinct rows, want %d", len(seen), n)
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("row %d claimed %d times", id, c)
		}
	}
}
