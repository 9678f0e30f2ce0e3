package storage_test

import (
	"context"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"log"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gocap/gocap/storage"
)

// A third-party backend needs nothing but the storage package: MemStore,
// in example_store_test.go, implements storage.Driver[*Tx] for a
// transaction type of its own. Here it goes through the life of one
// published row: inserted in the application's transaction, visible once
// that commits, claimed under a lease, and marked Succeeded by the holder
// of the lease.
func Example_thirdPartyBackend() {
	ctx := context.Background()
	store := NewMemStore()
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	now := time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

	// Message ids are snowflake ids: the smallest one made at now, plus a
	// sequence number, is an id made at now.
	id := storage.MinIDAt(now) + 1
	msg := &storage.Message{
		ID:            id,
		Name:          "order.paid",
		Headers:       map[string]string{"cap-msg-id": strconv.FormatInt(id, 10), "cap-msg-name": "order.paid"},
		Body:          []byte(`{"order":42}`),
		Added:         now,
		NextAttemptAt: now,
	}

	// Publish inside the application's transaction.
	tx := store.Begin()
	if err := store.InsertPublishedTx(ctx, tx, []*storage.Message{msg}, storage.InsertOptions{}); err != nil {
		log.Fatal(err)
	}
	if _, err := store.Get(ctx, storage.Published, id); errors.Is(err, storage.ErrNotFound) {
		fmt.Println("before commit: not visible")
	}
	if err := tx.Commit(); err != nil {
		log.Fatal(err)
	}

	// A processor claims the due rows under a lease of 30 seconds.
	claimed, err := store.Claim(ctx, storage.Published, storage.ClaimRequest{
		Now: now, LeaseUntil: now.Add(30 * time.Second), Token: 7, Limit: 10,
	})
	if err != nil {
		log.Fatal(err)
	}
	var done []storage.Completed
	for _, m := range claimed {
		fmt.Printf("claimed %s %s, added %s, leased until %s\n",
			m.Name, m.Body, storage.IDTime(m.ID).Format(time.TimeOnly), m.LeaseUntil.Format(time.TimeOnly))
		// ... the message is sent to the broker, which confirms it ...
		done = append(done, storage.Completed{
			Lease:   storage.Lease{ID: m.ID, Token: m.LeaseToken},
			Attempt: storage.Attempt{At: now, Duration: 3 * time.Millisecond},
		})
	}

	// The broker confirmed the send: the holder of the lease records it.
	n, err := store.Succeed(ctx, storage.Published, done, now.Add(24*time.Hour))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("succeeded:", n)
	row, err := store.Get(ctx, storage.Published, id)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("status %s, expires %s\n", row.Status, row.ExpiresAt.Format(time.DateTime))
	counts, err := store.Counts(ctx, storage.Published)
	if err != nil {
		log.Fatal(err)
	}
	for _, st := range storage.Statuses {
		fmt.Printf("%s: %d\n", st, counts[st])
	}
	// Output:
	// before commit: not visible
	// claimed order.paid {"order":42}, added 15:09:26, leased until 15:09:56
	// succeeded: 1
	// status Succeeded, expires 2026-03-15 15:09:26
	// Delayed: 0
	// Scheduled: 0
	// Succeeded: 1
	// Failed: 0
}

// thirdPartyFiles are the files of the third-party backend, its example
// and its conformance test.
var thirdPartyFiles = []string{"example_store_test.go", "example_store_failbatch_test.go", "example_store_dashboard_test.go", "example_test.go", "example_conformance_test.go"}

// TestThirdPartyBackendImports keeps the promise of issue #12 that a
// storage written against the contract needs nothing from internal/: the
// third-party files import the standard library and gocap's public
// storage and storagetest packages, nothing else.
func TestThirdPartyBackendImports(t *testing.T) {
	const module = "github.com/gocap/gocap/"
	allowed := map[string]bool{module + "storage": true, module + "storage/storagetest": true}
	for _, name := range thirdPartyFiles {
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, imp := range f.Imports {
			path, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				t.Fatalf("%s: import %s: %v", name, imp.Path.Value, err)
			}
			standard := !strings.Contains(strings.Split(path, "/")[0], ".")
			switch {
			case strings.Contains(path+"/", "/internal/"):
				t.Errorf("%s imports %s: a third-party storage cannot import internal packages", name, path)
			case !standard && !allowed[path]:
				t.Errorf("%s imports %s: a third-party storage needs only the standard library and gocap's storage packages", name, path)
			}
		}
	}
}
