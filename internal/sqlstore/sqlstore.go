// Package sqlstore holds the pieces that gocap's SQL storages share: how
// headers are encoded, how text is fitted to columns, the wrapping of
// permanent errors, argument lists, and scanning of the dashboard's
// aggregate queries.
package sqlstore

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gocap/gocap/storage"
)

// HeadersJSON encodes m's headers as a JSON object, {} when nil, for the
// headers column of every SQL storage. Keys and values that are not valid
// UTF-8 or hold NUL characters are stored as storage.ValidText makes them
// (jsonb refuses \u0000, and encoding/json would silently replace invalid
// bytes with U+FFFD). Valid headers, the usual case, are encoded as they
// are, without a copy. Should two keys become equal once made valid, one
// of their values is kept.
func HeadersJSON(m *storage.Message) (string, error) {
	h := m.Headers
	if len(h) == 0 {
		return "{}", nil
	}
	if !validHeaders(h) {
		valid := make(map[string]string, len(h))
		for k, v := range h {
			valid[storage.ValidText(k)] = storage.ValidText(v)
		}
		h = valid
	}
	b, err := json.Marshal(h)
	if err != nil {
		return "", fmt.Errorf("encoding headers of message %d: %w", m.ID, err)
	}
	return string(b), nil
}

// validHeaders reports whether every key and value of h is stored as it is.
func validHeaders(h map[string]string) bool {
	for k, v := range h {
		if !isValidText(k) || !isValidText(v) {
			return false
		}
	}
	return true
}

// isValidText reports whether storage.ValidText returns s unchanged.
func isValidText(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// truncatedMark ends a text that FitChars cut, as storage.TruncateText
// ends one it cut.
const truncatedMark = "…[truncated]"

// FitChars returns storage.ValidText(s) cut to at most n characters, for
// a column whose size counts characters (MySQL's VARCHAR(n)). A text that
// had to be cut ends with "…[truncated]" (within the n characters), unless
// n is too small for that mark. Text that fits is returned as it is.
func FitChars(s string, n int) string {
	s = storage.ValidText(s)
	if len(s) <= n || utf8.RuneCountInString(s) <= n { // bytes >= characters
		return s
	}
	if n <= 0 {
		return ""
	}
	mark := truncatedMark
	markChars := utf8.RuneCountInString(mark)
	if n < 4*markChars {
		mark, markChars = "", 0
	}
	keep, cut := n-markChars, 0
	for range keep {
		_, size := utf8.DecodeRuneInString(s[cut:])
		cut += size
	}
	return s[:cut] + mark
}

// Permanent wraps err with storage.ErrPermanent, for a storage's error
// classifier: errors.Is(result, storage.ErrPermanent) holds, and err stays
// reachable with errors.Is and errors.As.
func Permanent(err error) error {
	return fmt.Errorf("%w: %w", storage.ErrPermanent, err)
}

// NonNil returns b, or an empty slice for nil, for NOT NULL body columns.
func NonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// Placeholders returns n question-mark placeholders separated by commas.
func Placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// IDArgs returns prefix followed by ids, as query arguments.
func IDArgs(ids []int64, prefix ...any) []any {
	args := make([]any, 0, len(prefix)+len(ids))
	args = append(args, prefix...)
	for _, id := range ids {
		args = append(args, id)
	}
	return args
}

// ScanCounts reads (status, count) rows into a map that has every status.
func ScanCounts(rows *sql.Rows) (map[storage.Status]int64, error) {
	defer rows.Close()
	counts := map[storage.Status]int64{}
	for _, s := range storage.Statuses {
		counts[s] = 0
	}
	for rows.Next() {
		var s string
		var n int64
		if err := rows.Scan(&s, &n); err != nil {
			return nil, err
		}
		counts[storage.Status(s)] = n
	}
	return counts, rows.Err()
}

// ScanHistogram reads (bucket, status, count) rows, where bucket is the
// snowflake time (id >> 22) divided by bucketMillis.
func ScanHistogram(rows *sql.Rows, bucketMillis, epochMillis int64) ([]storage.HistogramBucket, error) {
	defer rows.Close()
	var out []storage.HistogramBucket
	for rows.Next() {
		var b, n int64
		var s string
		if err := rows.Scan(&b, &s, &n); err != nil {
			return nil, err
		}
		out = append(out, storage.HistogramBucket{Start: time.UnixMilli(b*bucketMillis + epochMillis).UTC(), Status: storage.Status(s), Count: n})
	}
	return out, rows.Err()
}

// MinID is the smallest snowflake id of a row added at or after since.
func MinID(since time.Time, epochMillis int64) int64 {
	return max(since.UnixMilli()-epochMillis, 0) << 22
}

// ListWhere returns the conditions and arguments that select the rows of
// a dashboard filter, for a storage with ? placeholders, and the page size.
// contentCond is the storage's condition for "the body contains the
// argument", and contentArg makes that argument from the searched text. ok
// is false when no row can match (a published message id that is not a
// number).
func ListWhere(f storage.Filter, contentCond string, contentArg func(string) any) (where []string, args []any, limit int, ok bool) {
	add := func(cond string, v any) {
		where = append(where, cond)
		args = append(args, v)
	}
	if f.Status != "" {
		add("status = ?", string(f.Status))
	}
	if f.Name != "" {
		add("name = ?", f.Name)
	}
	if f.Group != "" && f.Kind == storage.Received {
		add("grp = ?", f.Group)
	}
	if f.MsgID != "" {
		if f.Kind == storage.Received {
			add("msg_id = ?", f.MsgID)
		} else {
			id, err := strconv.ParseInt(f.MsgID, 10, 64)
			if err != nil {
				return nil, nil, 0, false
			}
			add("id = ?", id)
		}
	}
	if f.Content != "" {
		add(contentCond, contentArg(f.Content))
	}
	if f.BeforeID > 0 {
		add("id < ?", f.BeforeID)
	}
	limit = f.Limit
	if limit <= 0 {
		limit = 50
	}
	return where, args, limit, true
}
