package outbox

import (
	"strings"
	"time"
)

// sentTimeLayouts are the forms of cap-senttime accepted on receive: gocap's
// RFC 3339, and the invariant-culture forms DotNetCore.CAP writes for
// DateTime and DateTimeOffset.
var sentTimeLayouts = []string{
	time.RFC3339Nano,
	"01/02/2006 15:04:05 -07:00",
	"01/02/2006 15:04:05",
	"1/2/2006 3:04:05 PM -07:00",
	"1/2/2006 3:04:05 PM",
	"2006-01-02 15:04:05",
}

// formatSentTime formats t as cap-senttime: RFC 3339 in UTC, which .NET's
// DateTime.Parse and DateTimeOffset.Parse read.
func formatSentTime(t time.Time) string {
	return t.UTC().Format(time.RFC3339Nano)
}

// parseSentTime reads a cap-senttime value; ok is false if no accepted
// layout matches. Times without a zone are taken as UTC.
func parseSentTime(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	for _, layout := range sentTimeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}
