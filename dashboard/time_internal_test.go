package dashboard

import (
	"testing"
	"time"
)

func TestRelativeTimes(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		at   time.Time
		want string
	}{
		{now.Add(4*time.Minute + 10*time.Second), "in 4m 10s"},
		{now.Add(4*time.Minute + 10*time.Second - 300*time.Millisecond), "in 4m 10s"},
		{now.Add(-4*time.Minute - 10*time.Second), "4m 10s ago"},
		{now.Add(45 * time.Second), "in 45s"},
		{now.Add(time.Hour), "in 1h"},
		{now.Add(2*time.Hour + 5*time.Minute + 30*time.Second), "in 2h 5m"},
		{now.Add(2*time.Hour + 30*time.Second), "in 2h"},
		{now.Add(-(3*24*time.Hour + 4*time.Hour)), "3d 4h ago"},
		{now.Add(200 * time.Millisecond), "now"},
	} {
		if got := relative(c.at, now); got != c.want {
			t.Errorf("relative(now%+v) = %q, want %q", c.at.Sub(now), got, c.want)
		}
	}
	for d, want := range map[time.Duration]string{
		350 * time.Microsecond: "350µs", 12*time.Millisecond + 340*time.Microsecond: "12.3ms",
		1250 * time.Millisecond: "1.25s", 90 * time.Second: "1m 30s",
	} {
		if got := fmtDuration(d); got != want {
			t.Errorf("fmtDuration(%v) = %q, want %q", d, got, want)
		}
	}
	for s, want := range map[string]string{"one line": "one line", "first\nsecond": "first …", "first\r\nsecond": "first …"} {
		if got := firstLine(s); got != want {
			t.Errorf("firstLine(%q) = %q, want %q", s, got, want)
		}
	}
}
