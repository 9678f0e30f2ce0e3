package wire_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/gocap/gocap/wire"
)

func TestPublished(t *testing.T) {
	sent := time.Date(2026, 11, 25, 10, 30, 0, 0, time.UTC)
	h := wire.Published(42, "order.paid", "OrderPaid", sent, map[string]string{
		wire.MsgID: "forged", wire.CorrelationID: "7", "tenant": "acme",
	})
	want := map[string]string{
		wire.MsgID: "42", wire.MsgName: "order.paid", wire.MsgType: "OrderPaid", wire.CorrelationID: "7",
		wire.CorrelationSeq: "0", wire.SentTime: "2026-11-25T10:30:00Z", "tenant": "acme",
	}
	if len(h) != len(want) {
		t.Errorf("headers %v, want %v", h, want)
	}
	for k, v := range want {
		if h[k] != v {
			t.Errorf("%s = %q, want %q", k, h[k], v)
		}
	}
	if _, ok := wire.Published(1, "a", "", sent, nil)[wire.MsgType]; ok {
		t.Error("an empty type name was sent")
	}
}

func TestReceived(t *testing.T) {
	in := map[string]string{"x-trace": "7"}
	d := wire.Received("billing", "order.paid.eu", in, func() string { return "99" })
	if d.MsgID != "99" || !d.GeneratedID || d.Name != "order.paid.eu" ||
		d.Headers[wire.MsgID] != "99" || d.Headers[wire.MsgName] != "order.paid.eu" || d.Headers[wire.Group] != "billing" {
		t.Errorf("foreign delivery: %+v", d)
	}
	if len(in) != 1 {
		t.Error("Received modified its input")
	}
	d = wire.Received("billing", "rk", map[string]string{wire.MsgID: "5", wire.MsgName: "order.paid"}, nil)
	if d.MsgID != "5" || d.GeneratedID || d.Name != "order.paid" {
		t.Errorf("CAP delivery: %+v", d)
	}
}

func TestSentTime(t *testing.T) {
	want := time.Date(2026, 11, 25, 10, 30, 0, 0, time.UTC)
	for _, s := range []string{"2026-11-25T10:30:00Z", "11/25/2026 10:30:00 +00:00", "11/25/2026 10:30:00",
		"11/25/2026 11:30:00 AM +01:00", "2026-11-25 10:30:00"} {
		got, ok := wire.ParseSentTime(s)
		if !ok || !got.Equal(want) {
			t.Errorf("ParseSentTime(%q) = %v, %v", s, got, ok)
		}
	}
	if _, ok := wire.ParseSentTime("yesterday"); ok {
		t.Error("nonsense parsed")
	}
	if s := wire.FormatSentTime(want.In(time.FixedZone("x", 3600))); s != "2026-11-25T10:30:00Z" {
		t.Errorf("FormatSentTime = %q", s)
	}
}

func TestHeaderValue(t *testing.T) {
	for _, b := range [][]byte{[]byte("plain"), {0xff, 0x00, 0xfe}, []byte("a\x00b"), {}} {
		s := wire.HeaderValue(b)
		if !bytes.Equal(wire.DecodeHeaderValue(s), b) {
			t.Errorf("%q → %q does not decode back", b, s)
		}
	}
	if s := wire.HeaderValue([]byte("plain")); s != "plain" {
		t.Errorf("text was encoded: %q", s)
	}
	if s := wire.HeaderValue([]byte{0xff}); s != "base64:/w==" {
		t.Errorf("binary: %q", s)
	}
}

// TestHeaderValueForms pins the text of each kind of value: text as it is
// (multi-byte UTF-8 included), invalid UTF-8 and NUL bytes in base64.
func TestHeaderValueForms(t *testing.T) {
	for _, c := range []struct {
		in   []byte
		want string
	}{
		{nil, ""},
		{[]byte("raw"), "raw"},
		{[]byte("naïve 東京"), "naïve 東京"},
		{[]byte{0xff, 0xfe, 'x'}, "base64://54"},
		{[]byte{'a', 0, 'b'}, "base64:YQBi"},
	} {
		got := wire.HeaderValue(c.in)
		if got != c.want {
			t.Errorf("HeaderValue(%q) = %q, want %q", c.in, got, c.want)
		}
		if back := wire.DecodeHeaderValue(got); !bytes.Equal(back, c.in) {
			t.Errorf("DecodeHeaderValue(%q) = %q, want %q", got, back, c.in)
		}
	}
}

// The delay is written as .NET's TimeSpan.ToString() writes it, which is
// what CAP's PublishDelayAsync puts in cap-delaytime.
func TestDelay(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{30 * time.Minute, "00:30:00"},
		{90 * time.Second, "00:01:30"},
		{1500 * time.Millisecond, "00:00:01.5000000"},
		{26*time.Hour + 3*time.Minute + 4*time.Second + 500*time.Millisecond, "1.02:03:04.5000000"},
		{10 * 24 * time.Hour, "10.00:00:00"},
	} {
		if got := wire.FormatDelay(c.d); got != c.want {
			t.Errorf("FormatDelay(%v) = %q, want %q", c.d, got, c.want)
		}
		if back, ok := wire.ParseDelay(c.want); !ok || back != c.d {
			t.Errorf("ParseDelay(%q) = %v, %v", c.want, back, ok)
		}
	}
	if d, ok := wire.ParseDelay("30m"); !ok || d != 30*time.Minute {
		t.Errorf("a Go duration: %v %v", d, ok)
	}
	for _, bad := range []string{"", "soon", "1:2", "00:xx:00"} {
		if _, ok := wire.ParseDelay(bad); ok {
			t.Errorf("ParseDelay(%q) accepted", bad)
		}
	}
	due := time.Date(2026, 11, 25, 11, 0, 0, 0, time.UTC)
	h := wire.Delayed(wire.Published(1, "a", "", due.Add(-30*time.Minute), nil), 30*time.Minute, due)
	if h[wire.DelayTime] != "00:30:00" || h[wire.SentTime] != "2026-11-25T11:00:00Z" {
		t.Errorf("delayed headers %v", h)
	}
}
