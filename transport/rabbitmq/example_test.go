package rabbitmq_test

import (
	"log"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gocap/gocap/transport/rabbitmq"
)

// Group queues as quorum queues whose messages expire after an hour into
// a dead-letter exchange. A queue that exists already must have been
// declared with the same arguments (see rabbitmq.ErrQueueMismatch).
func Example_queueArguments() {
	tr, err := rabbitmq.New(rabbitmq.Config{
		URL:       "amqp://guest:guest@127.0.0.1:5672/",
		QueueType: rabbitmq.QueueQuorum,
		QueueArguments: amqp.Table{
			"x-message-ttl":             3_600_000, // ms
			"x-dead-letter-exchange":    "orders.dead",
			"x-dead-letter-routing-key": "expired",
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer tr.Close()
}

// Consuming the queues DotNetCore.CAP declared with its default arguments.
func Example_capQueues() {
	tr, err := rabbitmq.New(rabbitmq.Config{
		URL:            "amqp://guest:guest@127.0.0.1:5672/",
		QueueArguments: amqp.Table{"x-message-ttl": rabbitmq.CAPMessageTTL},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer tr.Close()
}
