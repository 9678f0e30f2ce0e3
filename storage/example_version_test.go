package storage_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/gocap/gocap/storage"
)

// A version (outbox.Options.Version, stored in Message.Version) is at most
// 20 ASCII letters, digits, '.', '_' or '-', as DotNetCore.CAP's
// VARCHAR(20) column; the empty version is valid.
func ExampleCheckVersion() {
	for _, v := range []string{"", "v1", "2026.11-rc_1", "v 1", "a-version-of-21-bytes"} {
		fmt.Printf("%q: %v\n", v, storage.CheckVersion(v))
	}
	// Output:
	// "": <nil>
	// "v1": <nil>
	// "2026.11-rc_1": <nil>
	// "v 1": version "v 1" holds ' ' at byte 1; only ASCII letters, digits, '.', '_' and '-' are allowed
	// "a-version-of-21-bytes": version "a-version-of-21-bytes" is 21 bytes long; at most 20 are allowed
}

// Rows of two versions in one table: a claim and NextDue of version v1
// see v1's rows only (ClaimRequest.Version, DueRequest.Version).
func ExampleDueRequest() {
	ctx := context.Background()
	store := NewMemStore()
	now := time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)
	var msgs []*storage.Message
	for i, v := range []string{"v2", "v1", "v2", "v1"} {
		id := storage.MinIDAt(now) + int64(i) + 1
		due := now.Add(time.Duration(i-1) * time.Minute) // the first two are due
		msgs = append(msgs, &storage.Message{ID: id, Name: "order.paid", Body: []byte(v), Added: now, NextAttemptAt: due, Version: v})
	}
	if err := store.InsertPublished(ctx, msgs, storage.InsertOptions{}); err != nil {
		log.Fatal(err)
	}
	claimed, _ := store.Claim(ctx, storage.Published, storage.ClaimRequest{
		Now: now, LeaseUntil: now.Add(30 * time.Second), Token: 7, Limit: 10, Version: "v1",
	})
	for _, m := range claimed {
		fmt.Println("claimed a row of", m.Version, "due at", m.NextAttemptAt.Format(time.TimeOnly))
	}
	next, _ := store.NextDue(ctx, storage.Published, storage.DueRequest{After: now, Version: "v1"})
	fmt.Println("next v1 row due at", next.Format(time.TimeOnly))
	// Output:
	// claimed a row of v1 due at 15:09:26
	// next v1 row due at 15:11:26
}
