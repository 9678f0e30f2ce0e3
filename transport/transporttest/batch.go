package transporttest

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/wire"
)

// runBatch checks transport.BatchSender.
func runBatch(t *testing.T, h Harness) {
	t.Run("SendBatch", func(t *testing.T) { sendBatch(t, h) })
}

// sendBatch checks a transport.BatchSender: a batch over two topics, and
// concurrent batches, arrive whole, each message to its topic.
func sendBatch(t *testing.T, h Harness) {
	tr := h.New(t)
	bs, ok := tr.(transport.BatchSender)
	if !ok {
		t.Skip("the transport does not implement transport.BatchSender")
	}
	var paid, shipped recorder
	consume(t, tr, "batch-paid", []string{"order.paid"}, &paid)
	consume(t, tr, "batch-shipped", []string{"order.shipped"}, &shipped)
	time.Sleep(h.Settle)

	const batches, perBatch = 4, 50
	var wg sync.WaitGroup
	for b := range batches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msgs := make([]transport.Outgoing, perBatch)
			for i := range msgs {
				topic := "order.paid"
				if i%2 == 1 {
					topic = "order.shipped"
				}
				msgs[i] = transport.Outgoing{Topic: topic, Message: msg(b*perBatch + i)}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			errs := bs.SendBatch(ctx, msgs)
			if len(errs) != len(msgs) {
				t.Errorf("SendBatch returned %d errors for %d messages", len(errs), len(msgs))
				return
			}
			for i, err := range errs {
				if err != nil {
					t.Errorf("SendBatch: message %d: %v", i, err)
				}
			}
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	// Even messages went to order.paid, odd ones to order.shipped.
	for parity, r := range []*recorder{&paid, &shipped} {
		for _, d := range r.wait(t, batches*perBatch/2) {
			id := d.Headers[wire.MsgID]
			seen[id] = true
			if n, err := strconv.Atoi(id); err != nil || n%2 != parity {
				t.Errorf("message %s arrived on the wrong topic (even ones go to order.paid, odd ones to order.shipped)", id)
			}
		}
	}
	for i := range batches * perBatch {
		if !seen[fmt.Sprint(i)] {
			t.Errorf("message %d never arrived", i)
		}
	}
	if errs := bs.SendBatch(context.Background(), nil); len(errs) != 0 {
		t.Errorf("SendBatch of no messages returned %v", errs)
	}
}
