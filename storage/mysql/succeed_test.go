package mysql_test

import (
	"context"
	"testing"
	"time"

	"github.com/gocap/gocap/storage"
)

// TestSucceedGroups marks batches whose rows share lease tokens and
// attempts in groups — one group (the rows of one batch send), a few
// groups (several sends, two claims), and more groups than a statement
// picks among (each row its own attempt) — with a row of each batch under
// a lease token that is not its own: every other row becomes Succeeded
// with its own attempt last in its history, and that row is left alone.
func TestSucceedGroups(t *testing.T) {
	d, _ := newDriver(t)
	ctx := context.Background()
	t0 := time.Now().UTC().Truncate(time.Microsecond)
	attempt := func(ms int) storage.Attempt {
		return storage.Attempt{At: t0.Add(time.Duration(ms) * time.Millisecond), Duration: time.Duration(ms) * time.Microsecond}
	}
	cases := []struct {
		name string
		// the group of each row: its claim (0 or 1) and its attempt
		claims, attempts []int
	}{
		{"one group", []int{0, 0, 0, 0}, []int{1, 1, 1, 1}},
		{"groups", []int{0, 0, 1, 1, 0, 1}, []int{1, 2, 1, 1, 2, 3}},
		{"each its own attempt", make([]int, 40), make([]int, 40)}, // more groups than a CASE picks among
	}
	last := &cases[len(cases)-1]
	for i := range last.attempts {
		last.claims[i], last.attempts[i] = i%2, i+1
	}
	var id int64
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := len(c.claims)
			msgs := make([]*storage.Message, n+1) // the last: leased under another token
			for i := range msgs {
				id++
				due := t0.Add(time.Duration(i-n-1) * time.Microsecond) // claimed in this order
				msgs[i] = &storage.Message{ID: id, Name: "t", Headers: map[string]string{}, Body: []byte("b"), Added: due, NextAttemptAt: due}
			}
			if err := d.InsertPublished(ctx, msgs, storage.InsertOptions{}); err != nil {
				t.Fatal(err)
			}
			// Row by row, in due order, each under the token of its claim.
			byID := map[int64]*storage.Message{}
			for i := range msgs {
				claim := 1
				if i < n {
					claim = c.claims[i]
				}
				got, err := d.Claim(ctx, storage.Published, storage.ClaimRequest{Now: t0, LeaseUntil: t0.Add(time.Hour), Token: 1000*id + int64(claim), Limit: 1})
				if err != nil || len(got) != 1 || got[0].ID != msgs[i].ID {
					t.Fatalf("claim of row %d: %v, %v", msgs[i].ID, got, err)
				}
				byID[got[0].ID] = got[0]
			}
			var done []storage.Completed
			for i, m := range msgs {
				c0 := byID[m.ID]
				if c0 == nil {
					t.Fatalf("row %d was not claimed", m.ID)
				}
				token := c0.LeaseToken
				a := attempt(0)
				if i < n {
					a = attempt(c.attempts[i])
				} else {
					token++ // not the row's lease
				}
				done = append(done, storage.Completed{Lease: storage.Lease{ID: m.ID, Token: token}, Attempt: a})
			}
			got, err := d.Succeed(ctx, storage.Published, done, t0.Add(time.Hour))
			if err != nil || got != int64(n) {
				t.Fatalf("Succeed = %d, %v; want %d", got, err, n)
			}
			for i, m := range msgs {
				row, err := d.Get(ctx, storage.Published, m.ID)
				if err != nil {
					t.Fatal(err)
				}
				if i == n {
					if row.Status != storage.StatusScheduled || row.LeaseToken == 0 || len(row.Attempts) != 0 {
						t.Errorf("row under another token: %s, token %d, %d attempts; want it left alone", row.Status, row.LeaseToken, len(row.Attempts))
					}
					continue
				}
				want := attempt(c.attempts[i])
				if row.Status != storage.StatusSucceeded || row.LeaseToken != 0 || len(row.Attempts) != 1 ||
					!row.Attempts[0].At.Equal(want.At) || row.Attempts[0].Duration != want.Duration {
					t.Errorf("row %d: %s, token %d, attempts %+v; want Succeeded with the attempt %+v", i, row.Status, row.LeaseToken, row.Attempts, want)
				}
			}
		})
	}
}
