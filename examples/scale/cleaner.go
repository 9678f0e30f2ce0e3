package main

import (
	"context"
	"fmt"
	"time"

	"github.com/gocap/gocap/outbox"
)

// cleaning measures (b): the dispatch rate while the cleaner deletes
// c.expired expired rows, against a table of as many rows not yet expired.
func (b *bench) cleaning(ctx context.Context, c config) error {
	keep, err := b.schema(ctx)
	if err != nil {
		return err
	}
	if err := b.fill(ctx, keep, c.expired, "bench.done", "Succeeded", "now() + interval '1 day'"); err != nil {
		return err
	}
	clean, err := b.schema(ctx)
	if err != nil {
		return err
	}
	// A short CleanInterval for both: the cleaner runs when the processor
	// starts, and every second after.
	opts := outbox.Options{CleanInterval: time.Second}
	var without, with []float64
	for round := 1; round <= c.rounds; round++ {
		order := []string{keep, clean}
		if round%2 == 0 {
			order = []string{clean, keep}
		}
		rates := map[string]float64{}
		var left int64
		for _, s := range order {
			var done func() error
			if s == clean {
				// Each round starts with c.expired expired rows.
				if _, err := b.pool.Exec(ctx, "TRUNCATE "+clean+".published"); err != nil {
					return err
				}
				if err := b.fill(ctx, clean, c.expired, "bench.done", "Succeeded", "now() - interval '1 hour'"); err != nil {
					return err
				}
				done = func() error {
					return b.pool.QueryRow(ctx, "SELECT count(*) FROM "+clean+".published WHERE expires_at < now()").Scan(&left)
				}
			}
			r, err := b.dispatchRate(ctx, s, c.immediate, opts, done)
			if err != nil {
				return err
			}
			rates[s] = r
		}
		fmt.Printf("(b) round %d: dispatch %6.0f msg/s beside %d rows not expired, %6.0f msg/s while the cleaner deletes %d expired rows"+
			" (%d deleted when the dispatch was done)\n", round, rates[keep], c.expired, rates[clean], c.expired, int64(c.expired)-left)
		without, with = append(without, rates[keep]), append(with, rates[clean])
	}
	m0, m1 := median(without), median(with)
	fmt.Printf("(b) medians of %d rounds of %d messages: %6.0f msg/s without cleaning, %6.0f msg/s while cleaning = %.0f%% (target >= 80%%)\n",
		c.rounds, c.immediate, m0, m1, 100*m1/m0)
	return nil
}
