package kafka_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log"

	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/kafka"
	"github.com/gocap/gocap/wire"
)

// Send and consume directly; an outbox does the same when given the
// transport (outbox.New(store, tr, outbox.Options{})).
func ExampleNew() {
	tr, err := kafka.New(kafka.Config{
		Brokers:          []string{"127.0.0.1:9092"},
		AutoCreateTopics: true,
		KeyHeader:        "order-id", // records of one order go to one partition
	})
	if err != nil {
		log.Fatal(err)
	}
	defer tr.Close()
	ctx := context.Background()
	err = tr.Send(ctx, "order.paid", transport.Message{
		Headers: map[string]string{wire.MsgID: "1", wire.MsgName: "order.paid", "order-id": "42"},
		Body:    []byte(`{"id":42}`),
	})
	if err != nil {
		log.Fatal(err)
	}
	err = tr.Consume(ctx, "billing", []string{"order.paid"}, func(ctx context.Context, d transport.Delivery) error {
		log.Printf("%s: %s", d.Topic, d.Body)
		return nil // the offset is committed only now
	})
	if err != nil {
		log.Fatal(err)
	}
}

// Brokers that require TLS and SASL/SCRAM. Credentials the brokers refuse
// make Send, Consume and Healthy fail at once with kafka.ErrAuthentication.
func Example_sasl() {
	roots, err := x509.SystemCertPool() // or a pool with the brokers' CA
	if err != nil {
		log.Fatal(err)
	}
	tr, err := kafka.New(kafka.Config{
		Brokers: []string{"kafka-1.example:9093"},
		TLS:     &tls.Config{RootCAs: roots},
		SASL:    &kafka.SASL{Mechanism: kafka.SASLScramSHA512, User: "orders", Password: "…"},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer tr.Close()
}
