package sqlstore

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
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
	plain := testing.AllocsPerRun(100, func() { _, _ = json.Marshal(m.Headers) })
	got := testing.AllocsPerRun(100, func() { _, _ = HeadersJSON(m) })
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
