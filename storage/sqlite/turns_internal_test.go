package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestWriteTurns: on Open's *sql.DB, a transaction that may write waits
// for the one before it to end and then begins, the waiting ones in the
// order they began; a read-only one does not wait; a rollback ends the
// turn as a commit does.
func TestWriteTurns(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "turns.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE t (n INTEGER)`); err != nil {
		t.Fatal(err)
	}
	first, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.Exec(`INSERT INTO t VALUES (-1)`); err != nil {
		t.Fatal(err)
	}
	// A read-only transaction begins while the first holds the turn.
	ro, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := ro.QueryRow(`SELECT COUNT(*) FROM t`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("read-only transaction beside a writing one: %d rows, %v; want 0 (the insert is not committed)", n, err)
	}
	ro.Rollback()

	// Five writers, each begun after the one before waits.
	const writers = 5
	var mu sync.Mutex
	var order []int
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			if _, err := tx.Exec(`INSERT INTO t VALUES (?)`, i); err != nil {
				t.Error(err)
			}
			if i%2 == 0 {
				err = tx.Commit()
			} else {
				err = tx.Rollback()
			}
			if err != nil {
				t.Error(err)
			}
		}()
		// It waits for its turn by now (a connection opened, BEGIN asked):
		// a generous pause, so that the order of arrival is the order of i
		// on a loaded machine too.
		time.Sleep(200 * time.Millisecond)
	}
	mu.Lock()
	if len(order) != 0 {
		t.Errorf("%v began while the first transaction held the turn", order)
	}
	mu.Unlock()
	if err := first.Commit(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, w := range order {
		if w != i {
			t.Fatalf("writers began in the order %v, want 0..%d", order, writers-1)
		}
	}
	if err := db.QueryRow(`SELECT COUNT(*) FROM t`).Scan(&n); err != nil || n != 4 {
		t.Fatalf("%d rows, %v; want 4 (the first's and three commits)", n, err)
	}
}

// TestWriteTurnTimeout: a transaction that does not get its turn within
// the wait fails with errNoTurn, and one whose context ends, with the
// context's error.
func TestWriteTurnTimeout(t *testing.T) {
	tu := &turns{wait: 50 * time.Millisecond}
	if err := tu.take(context.Background()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := tu.take(context.Background()); !errors.Is(err, errNoTurn) {
		t.Fatalf("second take: %v, want errNoTurn", err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Fatalf("gave up after %v, want the wait of 50ms", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := tu.take(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("take with an ended context: %v", err)
	}
	tu.give()
	// The waits that gave up give the turn back as they get it.
	if err := tu.take(context.Background()); err != nil {
		t.Fatalf("take after give: %v", err)
	}
	tu.give()
}
