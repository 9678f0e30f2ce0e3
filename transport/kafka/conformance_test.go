package kafka_test

import (
	"testing"
	"time"

	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/kafka"
	"github.com/gocap/gocap/transport/transporttest"
)

func TestConformance(t *testing.T) {
	transporttest.Run(t, transporttest.Harness{
		New: func(t *testing.T) transport.Transport {
			return newTransport(t, cluster(t), kafka.Config{AutoCreateTopics: true, Partitions: 2, RequeueDelay: 10 * time.Millisecond})
		},
		Settle:              time.Second,
		RebalanceRedelivers: true,
		// A record larger than the writer takes.
		Refused: func(*testing.T) (string, transport.Message) {
			return "order.refused", transport.Message{Body: make([]byte, kafka.MaxRecordBytes+1)}
		},
	})
}
