package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/wire"
)

// rawConfirmRate publishes n persistent messages with plain amqp091-go to a
// fresh durable queue, keeping up to window confirms outstanding, and
// returns msg/s. With exchange empty it sends the lightest message: to the
// default exchange, two headers. With an exchange it sends what gocap
// sends for a Publish: to that topic exchange with a queue bound by "#",
// mandatory, with CAP's headers, a message id and a timestamp.
func rawConfirmRate(ctx context.Context, url, exchange string, n int) (float64, error) {
	const window = 256
	conn, err := amqp.Dial(url)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return 0, err
	}
	// A durable queue, like the queue of a consumer group: persistent
	// messages to it are written to disk, as in production.
	q, err := ch.QueueDeclare("gocap.bench.raw."+strconv.FormatInt(ids.Token()%1_000_000, 10), true, false, false, false, nil)
	if err != nil {
		return 0, err
	}
	defer ch.QueueDelete(q.Name, false, false, false)
	key, mandatory := q.Name, false
	if exchange != "" {
		if err := ch.ExchangeDeclare(exchange, "topic", true, false, false, false, nil); err != nil {
			return 0, err
		}
		if err := ch.QueueBind(q.Name, "#", exchange, false, nil); err != nil {
			return 0, err
		}
		key, mandatory = "bench.dispatch", true
	}
	if err := ch.Confirm(false); err != nil {
		return 0, err
	}
	returns := ch.NotifyReturn(make(chan amqp.Return, 1))
	body := []byte(`{"amount":"9.90","currency":"EUR","id":12345}`)
	gen, err := ids.NewGenerator(1)
	if err != nil {
		return 0, err
	}
	pending := make(chan *amqp.DeferredConfirmation, window)
	errc := make(chan error, 1)
	go func() {
		for dc := range pending {
			if ok, err := dc.WaitContext(ctx); !ok || err != nil {
				errc <- fmt.Errorf("nack or error: %v", err)
				for range pending {
				}
				return
			}
		}
		select {
		case r := <-returns:
			errc <- fmt.Errorf("message %s returned unroutable", r.MessageId)
		default:
			errc <- nil
		}
	}()
	start := time.Now()
	for i := range n {
		msg := amqp.Publishing{
			DeliveryMode: amqp.Persistent, Body: body,
			Headers: amqp.Table{"cap-msg-id": strconv.Itoa(i), "cap-msg-name": "bench"},
		}
		if exchange != "" {
			now := time.Now().UTC()
			id := strconv.FormatInt(gen.Next(), 10)
			msg.Headers = amqp.Table{
				wire.MsgID: id, wire.MsgName: key, wire.MsgType: "map[string]interface {}",
				wire.CorrelationID: id, wire.CorrelationSeq: "0",
				wire.SentTime: now.Format(time.RFC3339Nano),
			}
			msg.MessageId, msg.Timestamp = id, now
		}
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, mandatory, false, msg)
		if err != nil {
			close(pending)
			return 0, err
		}
		pending <- dc
	}
	close(pending)
	if err := <-errc; err != nil {
		return 0, err
	}
	return float64(n) / time.Since(start).Seconds(), nil
}
