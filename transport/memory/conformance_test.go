package memory_test

import (
	"testing"
	"time"

	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/memory"
	"github.com/gocap/gocap/transport/transporttest"
)

func TestConformance(t *testing.T) {
	transporttest.Run(t, transporttest.Harness{
		New: func(t *testing.T) transport.Transport {
			tr := memory.New(memory.Options{RequeueDelay: 10 * time.Millisecond})
			t.Cleanup(func() { tr.Close() })
			return tr
		},
		Wildcards: true,
		Settle:    20 * time.Millisecond,
		// No group is bound to the topic: memory.ErrUnroutable.
		Refused: func(*testing.T) (string, transport.Message) {
			return "nobody.listens", transport.Message{Body: []byte("x")}
		},
	})
}
