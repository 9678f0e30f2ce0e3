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
// run it at once. Teams that run their own migrations apply [SchemaSQL]
// instead. Every background query is an index scan: see QUERY_PLANS.md.
//
// Claims use UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED) in
// one statement, so no transaction stays open while a message is sent.
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
package postgres
