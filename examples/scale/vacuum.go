package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage/postgres"
	"github.com/gocap/gocap/transport/rabbitmq"
)

// autovacuumParams are the published table's parameters that Migrate sets
// (storage/postgres/schema.sql); the "server defaults" runs RESET them.
const autovacuumParams = `autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold,
	autovacuum_vacuum_insert_scale_factor, autovacuum_vacuum_insert_threshold, vacuum_index_cleanup`

// churn measures (e): on a table of -rows Succeeded rows, publishers
// commit messages as fast as one processor dispatches them for -churn,
// first with the server's autovacuum defaults on the published table, then
// with the parameters Migrate sets; every -sample it prints the table's
// dead rows and autovacuum count (pg_stat_user_tables) and the buffers
// and time of one claim (EXPLAIN ANALYZE of the driver's claim, LIMIT 1,
// rolled back). It needs a server with autovacuum on.
func (b *bench) churn(ctx context.Context, c config) error {
	var on, naptime string
	if err := b.pool.QueryRow(ctx, "SELECT current_setting('autovacuum'), current_setting('autovacuum_naptime')").Scan(&on, &naptime); err != nil {
		return err
	}
	if on != "on" {
		return errors.New("the server runs with autovacuum = off: no table is ever autovacuumed, whatever its parameters; run (e) on a server with autovacuum on")
	}
	schema, err := b.schema(ctx)
	if err != nil {
		return err
	}
	if err := b.fill(ctx, schema, c.rows, "bench.done", "Succeeded", "now() + interval '1 day'"); err != nil {
		return err
	}
	var def string
	if err := b.pool.QueryRow(ctx, `SELECT coalesce(array_to_string(reloptions, ', '), '') FROM pg_class WHERE oid = to_regclass($1)`,
		schema+".published").Scan(&def); err != nil {
		return err
	}
	fmt.Printf("(e) autovacuum on, naptime %s; the published table's parameters after Migrate: %s\n", naptime, def)
	type result struct {
		name                string
		dispatched, vacuums int64
		maxDead, maxBuffers int64
		buffers, ms, old    []float64
	}
	var results []result
	modes := []string{"server defaults", "gocap's parameters"}
	if c.gocapFirst {
		slices.Reverse(modes)
	}
	for _, mode := range modes {
		if mode == "server defaults" {
			if _, err := b.pool.Exec(ctx, "ALTER TABLE "+schema+".published RESET ("+autovacuumParams+")"); err != nil {
				return err
			}
		} else if err := postgres.New(b.pool, postgres.Options{Schema: schema, Logger: quiet}).Migrate(ctx); err != nil {
			return err
		}
		if err := b.vacuum(ctx, schema); err != nil {
			return err
		}
		r := result{name: mode}
		fmt.Printf("(e) %s, %v of churn beside %d Succeeded rows:\n", mode, c.churn, c.rows)
		samples, dispatched, err := b.churnRun(ctx, c, schema)
		if err != nil {
			return err
		}
		r.dispatched = dispatched
		for _, s := range samples {
			r.vacuums = s.vacuums
			r.maxDead = max(r.maxDead, s.dead)
			r.maxBuffers = max(r.maxBuffers, s.buffers)
			r.buffers, r.ms = append(r.buffers, float64(s.buffers)), append(r.ms, s.ms)
			r.old = append(r.old, float64(s.oldBuffers))
		}
		results = append(results, r)
	}
	for _, r := range results {
		fmt.Printf("(e) %-18s: %8d dispatched, %2d autovacuums, dead rows at most %8d, claim buffers median %5.0f max %5d, claim median %.2f ms max %.2f ms; up to 5 s ago: buffers median %5.0f max %5.0f\n",
			r.name, r.dispatched, r.vacuums, r.maxDead, median(r.buffers), r.maxBuffers, median(r.ms), slices.Max(r.ms), median(r.old), slices.Max(r.old))
	}
	return nil
}

type churnSample struct {
	dead, vacuums       int64
	buffers, oldBuffers int64   // the claim's, at now() and at now() - 5 s
	ms, oldMs           float64 // the claim's execution time, likewise
}

// churnRun runs the publishers and one processor on schema for c.churn and
// samples the table every c.sample; it returns the samples and the number
// of messages dispatched.
func (b *bench) churnRun(ctx context.Context, c config, schema string) ([]churnSample, int64, error) {
	q := schema + ".churn"
	if err := b.queue(q, "bench.churn"); err != nil {
		return nil, 0, err
	}
	defer b.deleteQueue(q)
	var base0 int64
	if err := b.pool.QueryRow(ctx, `SELECT coalesce(autovacuum_count, 0) FROM pg_stat_user_tables WHERE relid = to_regclass($1)`,
		schema+".published").Scan(&base0); err != nil {
		return nil, 0, err
	}
	var count0 int64
	if err := b.pool.QueryRow(ctx, "SELECT count(*) FROM "+schema+".published WHERE status = 'Succeeded'").Scan(&count0); err != nil {
		return nil, 0, err
	}
	_, stop, err := b.running(ctx, schema, "", outbox.Options{}, nil)
	if err != nil {
		return nil, 0, err
	}
	runCtx, cancel := context.WithTimeout(ctx, c.churn)
	defer cancel()
	tr, err := rabbitmq.New(rabbitmq.Config{URL: b.amqpURL, Exchange: b.exchange, Logger: quiet})
	if err != nil {
		stop()
		return nil, 0, err
	}
	pub, err := outbox.New(postgres.New(b.pool, postgres.Options{Schema: schema, Logger: quiet}), tr, outbox.Options{Logger: quiet})
	if err != nil {
		tr.Close()
		stop()
		return nil, 0, err
	}
	var published atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	payload := map[string]any{"id": 12345, "amount": "9.90", "currency": "EUR"}
	// At most 5,000 messages waiting: the table's churn is the
	// processor's, not a growing backlog's.
	var paused atomic.Bool
	wg.Add(1)
	go func() {
		defer wg.Done()
		for runCtx.Err() == nil {
			var waiting int64
			if err := b.pool.QueryRow(runCtx, "SELECT count(*) FROM "+schema+".published WHERE status IN ('Scheduled', 'Delayed')").Scan(&waiting); err == nil {
				paused.Store(waiting > 5000)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for runCtx.Err() == nil {
				if paused.Load() {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				err := pgx.BeginFunc(runCtx, b.pool, func(tx pgx.Tx) error {
					for range 20 {
						if _, err := pub.Publish(runCtx, tx, "bench.churn", payload); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					if runCtx.Err() == nil {
						errs <- err
					}
					return
				}
				published.Add(20)
			}
		}()
	}
	var samples []churnSample
	start := time.Now()
	tick := time.NewTicker(c.sample)
	var sampleErr error
loop:
	for {
		select {
		case <-runCtx.Done():
			break loop
		case err := <-errs:
			sampleErr = err
			break loop
		case <-tick.C:
			s, err := b.churnSample(ctx, schema)
			if err != nil {
				sampleErr = err
				break loop
			}
			s.vacuums -= base0
			samples = append(samples, s)
			fmt.Printf("    t=%3.0fs  published %8d  dead rows %8d  autovacuums %2d  claim: %5d buffers, %6.2f ms; up to 5 s ago: %5d buffers, %6.2f ms\n",
				time.Since(start).Seconds(), published.Load(), s.dead, s.vacuums, s.buffers, s.ms, s.oldBuffers, s.oldMs)
		}
	}
	tick.Stop()
	cancel()
	wg.Wait()
	pub.Close()
	tr.Close()
	stop()
	if sampleErr != nil {
		return nil, 0, sampleErr
	}
	var count1 int64
	if err := b.pool.QueryRow(ctx, "SELECT count(*) FROM "+schema+".published WHERE status = 'Succeeded'").Scan(&count1); err != nil {
		return nil, 0, err
	}
	return samples, count1 - count0, nil
}

// churnSample reads the published table's statistics and the plan of one
// claim of the processor's version (the empty one): the driver's claim
// statement with LIMIT 1, in a transaction rolled back.
func (b *bench) churnSample(ctx context.Context, schema string) (churnSample, error) {
	var s churnSample
	if err := b.pool.QueryRow(ctx, `SELECT n_dead_tup, autovacuum_count FROM pg_stat_user_tables WHERE relid = to_regclass($1)`,
		schema+".published").Scan(&s.dead, &s.vacuums); err != nil {
		return s, err
	}
	var err error
	if s.buffers, s.ms, err = b.claimPlan(ctx, schema, "now()"); err != nil {
		return s, err
	}
	s.oldBuffers, s.oldMs, err = b.claimPlan(ctx, schema, "now() - interval '5 seconds'")
	return s, err
}

// claimPlan returns the buffers and execution time of one claim of the
// processor's version (the empty one) of the rows due at bound: the
// driver's claim statement with LIMIT 1, in a transaction rolled back.
// Bound 5 s ago leaves out the rows in flight (published and leased in
// the last second or two), so that it reads the dead entries alone, as an
// idle poll does.
func (b *bench) claimPlan(ctx context.Context, schema, bound string) (buffers int64, ms float64, err error) {
	t := schema + ".published"
	var plan []byte
	err = pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)
			UPDATE `+t+` SET lease_until = now() + interval '1 minute', lease_token = 8, status = 'Scheduled'
			WHERE id IN (SELECT id FROM `+t+` c
				WHERE status IN ('Scheduled', 'Delayed') AND next_attempt_at <= `+bound+` AND (lease_until IS NULL OR lease_until <= `+bound+`)
				  AND version = ''
				  AND (c.ordering_key IS NULL OR NOT EXISTS (
					SELECT 1 FROM `+t+` p WHERE p.ordering_key = c.ordering_key AND p.version = c.version AND p.id < c.id
					  AND p.status <> 'Succeeded' AND (p.status <> 'Failed' OR true))
				  AND NOT EXISTS (
					SELECT 1 FROM `+t+` p WHERE p.ordering_key = c.ordering_key AND p.version = c.version AND p.id > c.id
					  AND p.status <> 'Succeeded' AND p.lease_until > `+bound+`))
				ORDER BY next_attempt_at LIMIT 1 FOR UPDATE SKIP LOCKED)
			RETURNING id`).Scan(&plan)
		if err != nil {
			return err
		}
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		return 0, 0, err
	}
	var out []struct {
		Plan struct {
			Hit  int64 `json:"Shared Hit Blocks"`
			Read int64 `json:"Shared Read Blocks"`
		}
		Time float64 `json:"Execution Time"`
	}
	if err := json.Unmarshal(plan, &out); err != nil || len(out) != 1 {
		return 0, 0, fmt.Errorf("reading the claim's plan: %v (%s)", err, plan)
	}
	return out[0].Plan.Hit + out[0].Plan.Read, out[0].Time, nil
}

// errRollback rolls back the sample's transaction.
var errRollback = errors.New("rolled back")
