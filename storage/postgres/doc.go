// Package postgres is gocap's PostgreSQL storage, on pgx/v5.
//
// [New] returns a [Driver] that implements storage.Driver[pgx.Tx]: Publish
// takes the application's pgx.Tx, so the message row commits or rolls back
// with the business data. [NewSQL] returns the same storage for
// applications on database/sql (GORM, sqlx, ent, bun): an [SQLDriver],
// whose Publish takes a *sql.Tx opened through pgx's stdlib driver.
//
// # Notifications
//
// An insert whose storage.InsertOptions ask for it (Notify) also issues a
// NOTIFY on the same transaction, in the same statement; PostgreSQL
// delivers it only on commit, and the processor, which LISTENs on a
// connection of its own ([Driver.Listen]), sends the message within
// milliseconds. Which publishes notify is the outbox's policy, not the
// driver's: PostgreSQL commits notifying transactions one at a time, so
// the outbox sets Notify on at most one publish per
// outbox.Options.NotifyInterval (2 ms by default) and polls for a while
// after a notification to find the rows of the others. Polling at the
// outbox's PollInterval remains as the fallback, so nothing depends on a
// notification arriving. Options.DisableNotify turns notifications off
// whatever the outbox asks.
//
// # Schema
//
// The tables live in their own schema (Options.Schema, default "gocap"):
// published, received and instances. [Driver.Migrate] creates them; it is
// idempotent and serialized by an advisory lock, so several instances may
// run it at once. On tables that are current it takes no lock on them, so
// an instance starting beside running ones holds up none of their
// queries; an upgrade that needs a table lock waits at most 5 s for it
// and otherwise returns an error, to be retried. Teams that run their own
// migrations apply [SchemaSQL] instead. Every background query is an
// index scan: see QUERY_PLANS.md.
//
// Claims use UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED) in
// one statement, so no transaction stays open while a message is sent.
//
// # Autovacuum
//
// The published and received tables churn like queues: every message is
// inserted, claimed and marked Succeeded, and the Succeed leaves a dead
// entry in the claim's partial index that only VACUUM removes; each claim
// reads the dead entries of every row completed since the table's last
// VACUUM. With the server's defaults (autovacuum_vacuum_scale_factor 0.2)
// autovacuum waits for a fifth of the table to be dead, two million rows
// on a ten-million-row table. So Migrate sets, on these two tables,
// autovacuum_vacuum_scale_factor = 0 and autovacuum_vacuum_threshold =
// 10000 (a VACUUM after 10,000 updated or deleted rows, whatever the
// table's size), and the same for inserts
// (autovacuum_vacuum_insert_scale_factor = 0,
// autovacuum_vacuum_insert_threshold = 10000). It sets each parameter only
// when the table has no value for it: an operator's ALTER TABLE ... SET
// (...) of one of them is kept by later Migrates, while an ALTER TABLE
// ... RESET (...) is undone by the next one; to run these tables under
// the server's settings, SET the parameters to them explicitly. Autovacuum
// still wakes only every autovacuum_naptime (one minute by default), and
// does nothing if the server runs with autovacuum off. QUERY_PLANS.md has
// the measurements.
//
// # Durability of the bookkeeping
//
// The inserts — a published row in the application's transaction, a
// received row before the broker's ack — commit under the server's
// synchronous_commit setting: their rows are durable when the commit
// returns. The engine's bookkeeping on rows already stored — Claim,
// Succeed, Fail, FailBatch and Release — runs with synchronous_commit off for its own
// transaction (set_config pipelined before the statement, in one round
// trip): the commit is visible at once but does not wait for the WAL
// flush (the WAL writer flushes it within three times wal_writer_delay,
// 600 ms by default). If the database crashes, or fails over to a standby
// that had not received it, and loses such a commit, the row is found as
// it was before — unleased, or Scheduled under a lease that ends — and is
// sent or handled again: a duplicate, which at-least-once delivery
// allows, never a loss. Under a sustained load this takes the processor's
// commits out of the queue of commits waiting for a flush.
// Options.DurableBookkeeping makes them wait for the flush as well.
//
// Ordering keys lose one promise in such a crash: a lost Claim leaves a
// row unleased that a processor is already sending, and a lost Succeed
// leaves a row Scheduled whose key's next row was claimed after it, so
// that once the database is back another processor may send a key's row
// while an earlier one is still (or again) in flight — a key's messages
// can then arrive out of order, around the crash only. Set
// DurableBookkeeping where a key's order must hold across a database
// crash too.
package postgres
