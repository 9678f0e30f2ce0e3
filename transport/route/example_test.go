package route_test

import (
	"fmt"
	"log"

	"github.com/gocap/gocap/transport/memory"
	"github.com/gocap/gocap/transport/route"
	"github.com/gocap/gocap/transport/webhook"
)

// Send merchant callbacks over HTTP and every other topic over a broker
// (here the in-process one; RabbitMQ or Kafka alike) from one outbox:
// pass the router to outbox.New. Subscriptions consume from the default.
func ExampleNew() {
	wh, err := webhook.New(webhook.Config{Routes: []webhook.Route{{Topic: "merchant.#", URL: "https://erp.example/cb"}}})
	if err != nil {
		log.Fatal(err)
	}
	broker := memory.New(memory.Options{})
	tr, err := route.New(route.Rule{Pattern: "merchant.#", Transport: wh}, route.Default(broker))
	if err != nil {
		log.Fatal(err)
	}
	defer tr.Close()
	// ob, err := outbox.New(store, tr, outbox.Options{})

	fmt.Println(tr.For("merchant.notify") == wh, tr.For("order.paid") == broker)
	// Output: true true
}
