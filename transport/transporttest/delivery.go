package transporttest

import (
	"testing"
	"time"

	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/wire"
)

// runDelivery checks what arrives where: headers and body, groups,
// sharing within a group, wildcards.
func runDelivery(t *testing.T, h Harness) {
	t.Run("HeadersAndBody", func(t *testing.T) { headersAndBody(t, h) })
	t.Run("GroupsEachGetEverything", func(t *testing.T) { groups(t, h) })
	t.Run("GroupMembersShare", func(t *testing.T) { share(t, h) })
	t.Run("Wildcards", func(t *testing.T) {
		if !h.Wildcards {
			t.Skip("Harness.Wildcards is false")
		}
		wildcards(t, h)
	})
}

func headersAndBody(t *testing.T, h Harness) {
	tr := h.New(t)
	var r recorder
	consume(t, tr, "conformance", []string{"order.paid"}, &r)
	time.Sleep(h.Settle)
	want := transport.Message{
		Headers: map[string]string{
			wire.MsgID: "2125444000991662080", wire.MsgName: "order.paid",
			wire.SentTime: "2026-11-25T10:30:00Z", "x-note": "naïve 東京 \"quoted\"", "empty": "",
		},
		Body: []byte{0, 1, 2, 0xfe, 0xff, '{', '}', 0},
	}
	send(t, tr, "order.paid", want)
	got := r.wait(t, 1)[0]
	if string(got.Body) != string(want.Body) {
		t.Errorf("body %v, want %v", got.Body, want.Body)
	}
	for k, v := range want.Headers {
		if got.Headers[k] != v {
			t.Errorf("header %s = %q, want %q", k, got.Headers[k], v)
		}
	}
	if got.Topic != "order.paid" {
		t.Errorf("topic %q", got.Topic)
	}
}

func groups(t *testing.T, h Harness) {
	tr := h.New(t)
	var a, b recorder
	consume(t, tr, "billing", []string{"order.paid"}, &a)
	consume(t, tr, "shipping", []string{"order.paid"}, &b)
	time.Sleep(h.Settle)
	const n = 20
	for i := range n {
		send(t, tr, "order.paid", msg(i))
	}
	for name, r := range map[string]*recorder{"billing": &a, "shipping": &b} {
		ids := map[string]bool{}
		for _, d := range r.wait(t, n) {
			ids[d.Headers[wire.MsgID]] = true
		}
		if len(ids) != n {
			t.Errorf("%s got %d distinct messages, want %d", name, len(ids), n)
		}
	}
}

func share(t *testing.T, h Harness) {
	tr := h.New(t)
	var a, b recorder
	consume(t, tr, "workers", []string{"job.run"}, &a)
	consume(t, tr, "workers", []string{"job.run"}, &b)
	time.Sleep(h.Settle * 3) // both members join the group
	const n = 30
	for i := range n {
		send(t, tr, "job.run", msg(i))
	}
	var seen map[string]int
	if !poll(30*time.Second, func() bool {
		ga, _ := a.snapshot()
		gb, _ := b.snapshot()
		seen = map[string]int{}
		for _, d := range append(ga, gb...) {
			seen[d.Headers[wire.MsgID]]++
		}
		return len(seen) == n
	}) {
		t.Fatalf("the group handled %d of %d messages", len(seen), n)
	}
	for id, c := range seen {
		if c != 1 && !h.RebalanceRedelivers {
			t.Errorf("message %s handled %d times in one group", id, c)
		}
	}
}

func wildcards(t *testing.T, h Harness) {
	tr := h.New(t)
	var star, hash recorder
	consume(t, tr, "star", []string{"order.*"}, &star)
	consume(t, tr, "hash", []string{"order.#"}, &hash)
	time.Sleep(h.Settle)
	for i, topic := range []string{"order.paid", "order.paid.eu", "order"} {
		send(t, tr, topic, msg(i))
	}
	if got := hash.wait(t, 3); len(got) != 3 {
		t.Errorf("order.# got %d", len(got))
	}
	star.wait(t, 1)
	time.Sleep(h.Settle)
	if got, _ := star.snapshot(); len(got) != 1 || got[0].Topic != "order.paid" {
		t.Errorf("order.* got %d deliveries, want only order.paid", len(got))
	}
}
