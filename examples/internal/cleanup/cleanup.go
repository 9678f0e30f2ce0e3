// Package cleanup removes what an example under examples/ created on the
// services it ran against: a PostgreSQL schema, RabbitMQ queues and an
// exchange. The examples call it at their start too, to remove what a run
// killed outright left.
package cleanup

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"
)

// PostgresSchema drops schema and all it holds, if it exists. It does not
// take the run's context: it runs after an interrupt canceled it.
func PostgresSchema(pool *pgxpool.Pool, schema string) error {
	_, err := pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
	if err != nil {
		return fmt.Errorf("dropping schema %s: %w", schema, err)
	}
	return nil
}

// RabbitMQ connects to the broker at url and deletes queues, then
// exchange, whether or not they exist or hold messages. It stops at the
// first error, naming the queue or exchange it could not delete.
func RabbitMQ(url, exchange string, queues ...string) error {
	conn, err := amqp.Dial(url)
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	for _, q := range queues {
		if _, err := ch.QueueDelete(q, false, false, false); err != nil {
			return fmt.Errorf("deleting queue %s: %w", q, err)
		}
	}
	if err := ch.ExchangeDelete(exchange, false, false); err != nil {
		return fmt.Errorf("deleting exchange %s: %w", exchange, err)
	}
	return nil
}
