package sqlstore

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gocap/gocap/storage"
)

func TestHeadersJSON(t *testing.T) {
	for _, c := range []struct {
		h    map[string]string
		want map[string]string
	}{
		{nil, map[string]string{}},
		{map[string]string{}, map[string]string{}},
		{map[string]string{"a": "日本", "b": `"q"\`}, map[string]string{"a": "日本", "b": `"q"\`}},
		{map[string]string{"k\x00": "v\xff", "ok": "x\x00y"}, map[string]string{`k\x00`: `v\xff`, "ok": `x\x00y`}},
	} {
		s, err := HeadersJSON(&storage.Message{Headers: c.h})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(s, `\u0000`) || !utf8.ValidString(s) {
			t.Errorf("HeadersJSON(%q) = %s: not storable", c.h, s)
		}
		var got map[string]string
		if err := json.Unmarshal([]byte(s), &got); err != nil {
			t.Fatalf("HeadersJSON(%q) = %s: %v", c.h, s, err)
		}
		if len(got) != len(c.want) {
			t.Errorf("HeadersJSON(%q) = %s, want %q", c.h, s, c.want)
		}
		for k, v := range c.want {
			if got[k] != v {
				t.Errorf("HeadersJSON(%q)[%q] = %q, want %q", c.h, k, got[k], v)
			}
		}
	}
}

func TestHeadersJSONValidAllocs(t *testing.T) {
	m := &storage.Message{Headers: map[string]string{"cap-msg-id": "1", "cap-msg-name": "n"}}
	// AllocsPerRun counts the whole process's allocations: on a busy
	// machine something else can allocate during one measurement, so the
	// least of three is compared.
	least := func(f func()) float64 {
		return min(testing.AllocsPerRun(100, f), testing.AllocsPerRun(100, f), testing.AllocsPerRun(100, f))
	}
	plain := least(func() { _, _ = json.Marshal(m.Headers) })
	got := least(func() { _, _ = HeadersJSON(m) })
	if got > plain+1 { // +1: the string conversion
		t.Errorf("HeadersJSON of valid headers: %v allocations, json.Marshal alone %v", got, plain)
	}
}

func TestFitChars(t *testing.T) {
	if got := FitChars("short", 255); got != "short" {
		t.Errorf("a short text was changed: %q", got)
	}
	if got := FitChars("a\xffb", 255); got != `a\xffb` {
		t.Errorf("invalid UTF-8: %q", got)
	}
	for _, s := range []string{strings.Repeat("x", 300), strings.Repeat("日", 300), strings.Repeat("🚀", 300)} {
		for _, n := range []int{1, 10, 47, 48, 200, 255} {
			got := FitChars(s, n)
			if c := utf8.RuneCountInString(got); c > n || !utf8.ValidString(got) {
				t.Errorf("FitChars(%.8q…, %d): %d characters", s, n, c)
			}
			if n >= 48 && !strings.HasSuffix(got, truncatedMark) {
				t.Errorf("FitChars(%.8q…, %d) does not say it was cut", s, n)
			}
			if again := FitChars(got, n); again != got {
				t.Errorf("FitChars(%.8q…, %d) is not idempotent", s, n)
			}
		}
	}
	exact := strings.Repeat("🚀", 255)
	if got := FitChars(exact, 255); got != exact {
		t.Error("a text of exactly n characters was cut")
	}
}

func TestPermanent(t *testing.T) {
	base := errors.New("boom")
	err := Permanent(base)
	if !errors.Is(err, storage.ErrPermanent) || !errors.Is(err, base) {
		t.Errorf("Permanent(%v) = %v", base, err)
	}
}

func TestAttemptJSONRoundTrip(t *testing.T) {
	at := time.Date(2026, 3, 15, 15, 9, 26, 123456789, time.FixedZone("X", 3600))
	long := strings.Repeat("日本", 1000) + "<&>"
	attempts := []storage.Attempt{
		{At: at, Duration: 1500 * time.Microsecond},
		{At: at.Add(time.Second), Duration: 2*time.Hour + 7*time.Microsecond, Error: "a <b> & \"c\"\x00\xff"},
		{At: at, Duration: 0, Error: long},
	}
	parts := make([]string, len(attempts))
	for i, a := range attempts {
		parts[i] = AttemptJSON(a)
		if strings.Contains(parts[i], `\u003c`) || !json.Valid([]byte(parts[i])) {
			t.Errorf("AttemptJSON(%+v) = %s", a, parts[i])
		}
	}
	got, err := DecodeAttempts(1, []byte("["+strings.Join(parts, ",")+"]"))
	if err != nil || len(got) != len(attempts) {
		t.Fatalf("DecodeAttempts: %v %v", got, err)
	}
	for i, a := range attempts {
		g := got[i]
		if !g.At.Equal(a.At) || g.At.Location() != time.UTC || g.Duration != a.Duration {
			t.Errorf("attempt %d: %+v, want %+v", i, g, a)
		}
		if want := storage.TruncateText(a.Error, storage.MaxAttemptErrorBytes); g.Error != want {
			t.Errorf("attempt %d: error %q, want %q", i, g.Error, want)
		}
	}
	if len(got[2].Error) > storage.MaxAttemptErrorBytes || !utf8.ValidString(got[2].Error) {
		t.Errorf("long error kept as %d bytes, valid %v", len(got[2].Error), utf8.ValidString(got[2].Error))
	}
	for _, empty := range []string{"", "[]", " "} {
		if got, err := DecodeAttempts(1, []byte(empty)); err != nil || got != nil {
			t.Errorf("DecodeAttempts(%q) = %v %v, want none", empty, got, err)
		}
	}
	if _, err := DecodeAttempts(1, []byte("{")); err == nil {
		t.Error("DecodeAttempts of bad JSON: no error")
	}
}

func TestFailedAttempt(t *testing.T) {
	now := time.Unix(100, 0).UTC()
	a := FailedAttempt(storage.Failure{Error: "boom", Now: now, Attempt: storage.Attempt{Duration: time.Second}})
	if a.Error != "boom" || !a.At.Equal(now) || a.Duration != time.Second {
		t.Errorf("FailedAttempt: %+v", a)
	}
	a = FailedAttempt(storage.Failure{Error: "boom", Now: now, Attempt: storage.Attempt{At: now.Add(-time.Second), Error: "own"}})
	if a.Error != "own" || !a.At.Equal(now.Add(-time.Second)) {
		t.Errorf("FailedAttempt with its own error and start: %+v", a)
	}
}
