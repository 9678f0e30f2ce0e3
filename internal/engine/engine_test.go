package engine

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/storage"
)

func TestNotifierCoalesces(t *testing.T) {
	n := notifier{interval: 200 * time.Millisecond}
	got := 0
	for range 5 {
		if n.shouldNotify() {
			got++
		}
	}
	if got != 1 {
		t.Fatalf("%d of 5 publishes within the interval notify, want 1", got)
	}
	time.Sleep(250 * time.Millisecond)
	if !n.shouldNotify() {
		t.Error("the first publish after the interval does not notify")
	}
	every := notifier{}
	for i := range 3 {
		if !every.shouldNotify() {
			t.Errorf("with no interval, publish %d does not notify", i)
		}
	}
}

func TestOutage(t *testing.T) {
	var o outage
	if o.wait() != 0 {
		t.Fatal("a new outage tracker pauses")
	}
	if _, ended := o.end(); ended {
		t.Fatal("end without an outage")
	}
	d1, first := o.begin()
	if !first || d1 != outageProbeMin || o.wait() <= 0 {
		t.Fatalf("begin: pause %v, first %v", d1, first)
	}
	if d, first := o.begin(); first || d > d1 {
		t.Errorf("a failure during the pause: pause %v, first %v; want no longer pause", d, first)
	}
	// Probes after each pause back off to outageProbeMax.
	var last time.Duration
	for range 10 {
		o.until = time.Now().Add(-time.Millisecond) // the pause is over
		last, _ = o.begin()
	}
	if last != outageProbeMax {
		t.Errorf("probe interval after many failures %v, want %v", last, outageProbeMax)
	}
	if _, ended := o.end(); !ended || o.wait() != 0 {
		t.Error("end does not end the outage")
	}
}

func TestRecoverSend(t *testing.T) {
	send := chain(SendFunc(func(context.Context, []*storage.Message) []error { panic("send") }), recoverSend)
	if errs := send(context.Background(), make([]*storage.Message, 3)); len(errs) != 3 || errs[2] == nil ||
		!strings.HasPrefix(errs[2].Error(), "panic: send") {
		t.Errorf("a panicking send returned %v", errs)
	}
}

func TestIsPermanent(t *testing.T) {
	if IsPermanent(errors.New("x")) || !IsPermanent(permanent(errors.New("x"))) {
		t.Error("IsPermanent misjudges")
	}
	wrapped := errors.Join(errors.New("ctx"), permanent(errors.New("x")))
	if !IsPermanent(wrapped) {
		t.Error("a wrapped permanent error is not permanent")
	}
}

// TestPassKeyedMillis: the wait ends after the millisecond of the newest
// keyed row's id, and there is none without keyed rows.
func TestPassKeyedMillis(t *testing.T) {
	gen, err := ids.NewGenerator(3)
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		keyed := &storage.Message{ID: gen.Next(), OrderingKey: "k"}
		plain := &storage.Message{ID: gen.Next()}
		passKeyedMillis([]*storage.Message{plain, keyed})
		if now := time.Now().UnixMilli(); now <= storage.IDMillis(keyed.ID) {
			t.Fatalf("returned at %d ms, within the millisecond %d of a keyed row's id", now, storage.IDMillis(keyed.ID))
		}
		later := &storage.Message{ID: gen.Next()}
		start := time.Now()
		passKeyedMillis([]*storage.Message{later})
		if d := time.Since(start); d > time.Millisecond {
			t.Fatalf("waited %v without keyed rows", d)
		}
	}
}
