// Package outboxtest is for the tests of applications that use gocap: it
// asserts what a transaction published — a message of a topic, decoded
// into its type; none; a number of them; several in order — and runs a
// subscription's handler on a value without a broker.
//
// The assertions with a Tx suffix read inside the application's
// transaction, before it commits (or instead of committing it, in a test
// that rolls back): the rows that transaction inserted with
// [outbox.Outbox.Publish] and the committed ones it sees. They need a
// storage that implements [storage.TxReader] — PostgreSQL, MySQL/MariaDB
// and SQLite do. The variants without Tx read committed rows through
// [outbox.Outbox.Store]; [Opts].Since and Status narrow them to one test's
// messages when a table is shared.
//
//	func TestPlaceOrder(t *testing.T) {
//		tx := begin(t)
//		placeOrder(ctx, ob, tx, Order{ID: 7})
//		got := outboxtest.RequirePublishedTx[OrderPlaced](ctx, t, ob, tx, "orders.placed", nil)
//		if got.ID != 7 { t.Errorf(...) }
//	}
//
// [Handle] runs the handler that the outbox's subscription of a topic
// would run, through the same handler chain as a delivery, on the message
// a publish of the value would send, and returns the handler's error:
//
//	err := outboxtest.Handle(ctx, ob, "orders.placed", OrderPlaced{ID: 7}, nil)
//
// Every assertion takes a testing.TB and fails the test with a message
// that names the topic and what was found instead. A topic is named as the
// application publishes it, without Options.TopicPrefix. An argument that
// no published message can match fails the assertion at once, naming it,
// so that a RequireNotPublished cannot pass for it whatever was published:
// an empty topic, a topic that Publish refuses (a wildcard such as
// "orders.*", for one), an [Opts].Status that is not a status, a negative
// [Opts].Delay or count.
package outboxtest
