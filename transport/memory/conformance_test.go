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
	})
}
