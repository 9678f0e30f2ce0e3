// Package gocap is the root of the gocap module: an embeddable Go library
// that makes messages between heterogeneous systems arrive, guaranteed. It
// implements the transactional outbox and inbox patterns, the way
// DotNetCore.CAP does for .NET, and interoperates with CAP on the wire.
//
// This package holds no code; the module is organised as:
//
//   - [github.com/gocap/gocap/outbox]: the API an application uses. Publish
//     stores a message in the application's own database transaction, so
//     it is sent if and only if the transaction commits; Subscribe registers
//     handlers; Run is the processor that sends, receives, retries and
//     cleans.
//   - [github.com/gocap/gocap/storage]: the contract with the database,
//     with one sub-package per database (postgres, mysql, sqlite) and the
//     conformance suite storagetest.
//   - [github.com/gocap/gocap/transport]: the contract with the broker, with
//     one sub-package per broker (rabbitmq, kafka, and memory for one
//     process) and the conformance suite transporttest.
//   - [github.com/gocap/gocap/dashboard]: an http.Handler to browse,
//     requeue and delete messages and watch the processors.
//   - [github.com/gocap/gocap/wire]: DotNetCore.CAP's wire format, shared by
//     the engine and every transport.
//
// The machinery behind the outbox API (claim loop, worker pool, completer,
// dispatch, receive, cleaner) is internal; ARCHITECTURE.md at the root of
// the repository maps it, file by file, along the path of one message.
//
// # Guarantees
//
// A published message is a row in the published table, written in the
// application's transaction. A processor claims committed rows (FOR UPDATE
// SKIP LOCKED with a lease, so several processes can run against one
// database and no row is in flight in two of them), sends them over the
// transport (in batches, where the transport takes batches, with publisher
// confirms pipelined), and marks each Succeeded once the broker confirmed it. A failed
// send is retried three times at once, then once a minute until 50 attempts
// have been made; the row is then Failed, the OnFailed callback runs, and a
// person can requeue it from the dashboard. Only attempts that reached the
// broker count: while the transport cannot reach it, dispatch pauses and
// no attempt is spent. A row whose processor died is taken over when its
// lease ends. Delivery is at least once.
//
// A consumed message is stored in the received table before it is
// acknowledged to the broker, de-duplicated by message id and consumer
// group, and then handed to its handler under the same retry policy. A
// delivery the database cannot store as it arrived is stored encoded, or
// as a Failed row with the reason: none is handed back to the broker for
// ever.
//
// Succeeded rows expire after a day and Failed rows after 15 days; an
// hourly cleaner deletes expired rows in bounded batches.
//
// # Wire format
//
// The body is the payload as the application serialized it (JSON by
// default, []byte untouched). The headers are CAP's: cap-msg-id (a decimal
// snowflake id), cap-msg-name (the topic), cap-msg-type, cap-senttime
// (RFC 3339, UTC), cap-corr-id and cap-corr-seq, plus the application's
// own. A program in any language that sets cap-msg-id and cap-msg-name can
// publish to a gocap subscriber; a message without them is still handled,
// with a generated id and the broker topic as its name.
package gocap
