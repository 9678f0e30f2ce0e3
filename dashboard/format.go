package dashboard

import (
	"strconv"
	"strings"
	"time"
)

// Times, durations and error texts for people.

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05.000 UTC")
}

// ago tells how long ago t was, or how long until it is: "4m 10s ago",
// "in 4m 10s".
func ago(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return relative(t, time.Now())
}

func relative(t, now time.Time) string {
	d := now.Sub(t).Round(time.Second)
	switch {
	case d < 0:
		return "in " + human(-d)
	case d == 0:
		return "now"
	}
	return human(d) + " ago"
}

// human writes a whole number of seconds for people, in its two largest
// units: "45s", "4m 10s", "2h 5m", "3d 4h".
func human(d time.Duration) string {
	s := int64(d / time.Second)
	parts := []struct {
		n    int64
		unit string
	}{{s / 86400, "d"}, {s / 3600 % 24, "h"}, {s / 60 % 60, "m"}, {s % 60, "s"}}
	for i, p := range parts {
		if p.n == 0 && i < len(parts)-1 {
			continue
		}
		out := strconv.FormatInt(p.n, 10) + p.unit
		if i < len(parts)-1 && parts[i+1].n != 0 {
			out += " " + strconv.FormatInt(parts[i+1].n, 10) + parts[i+1].unit
		}
		return out
	}
	return "0s"
}

// fmtDuration writes how long an attempt took: "350µs", "12.4ms", "1.25s".
func fmtDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(100 * time.Microsecond).String()
	case d < time.Minute:
		return d.Round(10 * time.Millisecond).String()
	}
	return human(d.Round(time.Second))
}

// firstLine is the first line of an error text, marked "…" when more follows.
func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return strings.TrimRight(s[:i], "\r") + " …"
	}
	return s
}
