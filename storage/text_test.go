package storage_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gocap/gocap/storage"
)

func TestValidText(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"plain", "plain"},
		{"日本語", "日本語"},
		{"a\x00b", `a\x00b`},
		{"a\xffb", `a\xffb`},
		{"\xe6\x97", `\xe6\x97`}, // a character cut in the middle
		{"ok\xc3\x28", `ok\xc3(`},
	} {
		if got := storage.ValidText(c.in); got != c.want {
			t.Errorf("ValidText(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestTruncateText(t *testing.T) {
	long := strings.Repeat("日", 40000) // 3 bytes each
	for _, max := range []int{1, 2, 10, 47, 48, 4000, 4001, 65535} {
		got := storage.TruncateText(long, max)
		if len(got) > max {
			t.Errorf("TruncateText(…, %d) has %d bytes", max, len(got))
		}
		if !utf8.ValidString(got) {
			t.Errorf("TruncateText(…, %d) is not valid UTF-8", max)
		}
		if max >= 4000 && !strings.HasSuffix(got, "…[truncated]") {
			t.Errorf("TruncateText(…, %d) does not say it was cut: …%q", max, got[len(got)-20:])
		}
	}
	if got := storage.TruncateText("short", 100); got != "short" {
		t.Errorf("a short text was changed: %q", got)
	}
	if got := storage.TruncateText("a\x00b", 100); got != `a\x00b` {
		t.Errorf("a NUL was not escaped: %q", got)
	}
}

func TestStorableMsgID(t *testing.T) {
	if got := storage.StorableMsgID("123"); got != "123" {
		t.Errorf("a short id was changed: %q", got)
	}
	long := strings.Repeat("x", 10000)
	a, b := storage.StorableMsgID(long), storage.StorableMsgID(long)
	if a != b || len(a) > storage.MaxMsgIDBytes || !strings.HasPrefix(a, "sha256:") {
		t.Errorf("StorableMsgID(long) = %q, %q", a, b)
	}
	if storage.StorableMsgID(long+"y") == a {
		t.Error("two long ids hash alike")
	}
	for _, id := range []string{"a\x00b", "\xff", strings.Repeat("é", storage.MaxMsgIDBytes)} {
		if got := storage.StorableMsgID(id); !strings.HasPrefix(got, "sha256:") {
			t.Errorf("StorableMsgID(%q) = %q, want a hash", id, got)
		}
	}
}
