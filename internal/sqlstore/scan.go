package sqlstore

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/gocap/gocap/storage"
)

// Rows is what *sql.Rows and pgx.Rows have in common. The scanners below
// read rows to the end but do not close them: the caller closes them (a
// deferred Close), also when a scanner returns early with an error.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// TimeDest returns a scan destination for a time column that stores the
// time read, in UTC, into t, and the zero time for NULL. Each storage has
// its own, for the way its database hands times over.
type TimeDest func(t *time.Time) any

// MessageColumns are the columns ScanMessages reads, in its order, after
// "id, " and the two columns for msg_id and grp, which a published table
// computes.
const MessageColumns = "name, headers, body, status, retries, last_error, added, next_attempt_at, expires_at, lease_token, lease_until, policy, attempts" +
	// ordering keys (#18)
	", ordering_key" +
	VersionColumn

// VersionColumn is the version column (issue #17) among MessageColumns.
const VersionColumn = ", version"

// ScanMessages reads rows of the columns id, msg_id, grp and
// MessageColumns into messages of kind.
func ScanMessages(rows Rows, kind storage.Kind, td TimeDest) ([]*storage.Message, error) {
	var out []*storage.Message
	err := scanMessages(rows, kind, td, nil, func(m *storage.Message) { out = append(out, m) })
	return out, err
}

// scanMessages reads rows of the columns of ScanMessages followed by the
// columns of extra, and calls each with every message (extra then holds
// that row's values).
func scanMessages(rows Rows, kind storage.Kind, td TimeDest, extra []any, each func(*storage.Message)) error {
	for rows.Next() {
		m := &storage.Message{Kind: kind}
		var headers, attempts []byte
		var status string
		var token sql.NullInt64
		var key sql.NullString
		dest := append([]any{&m.ID, &m.MsgID, &m.Group, &m.Name, &headers, &m.Body, &status, &m.Retries,
			&m.LastError, td(&m.Added), td(&m.NextAttemptAt), td(&m.ExpiresAt), &token, td(&m.LeaseUntil),
			&m.Policy, &attempts, &key,
			&m.Version}, extra...)
		if err := rows.Scan(dest...); err != nil {
			return err
		}
		m.OrderingKey = key.String
		m.Status = storage.Status(status)
		m.LeaseToken = token.Int64
		m.Body = NonNil(m.Body)
		if err := json.Unmarshal(headers, &m.Headers); err != nil {
			return fmt.Errorf("decoding headers of message %d: %w", m.ID, err)
		}
		var err error
		if m.Attempts, err = DecodeAttempts(m.ID, attempts); err != nil {
			return err
		}
		each(m)
	}
	return rows.Err()
}

// InstanceColumns are the columns ScanInstances reads, in its order.
const InstanceColumns = "id, hostname, pid, started, last_seen"

// ScanInstances reads rows of InstanceColumns.
func ScanInstances(rows Rows, td TimeDest) ([]storage.Instance, error) {
	var out []storage.Instance
	for rows.Next() {
		var inst storage.Instance
		if err := rows.Scan(&inst.ID, &inst.Hostname, &inst.PID, td(&inst.Started), td(&inst.LastSeen)); err != nil {
			return nil, err
		}
		out = append(out, inst)
	}
	return out, rows.Err()
}

// ScanCounts reads (status, count) rows into a map that has every status.
func ScanCounts(rows Rows) (map[storage.Status]int64, error) {
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
// index of a bucket of bucketMillis since the Unix epoch: the row id's
// time in Unix milliseconds (see storage.IDMillis and HistogramBucketSQL)
// divided by bucketMillis.
func ScanHistogram(rows Rows, bucketMillis int64) ([]storage.HistogramBucket, error) {
	var out []storage.HistogramBucket
	for rows.Next() {
		var b, n int64
		var s string
		if err := rows.Scan(&b, &s, &n); err != nil {
			return nil, err
		}
		out = append(out, storage.HistogramBucket{Start: time.UnixMilli(b * bucketMillis).UTC(), Status: storage.Status(s), Count: n})
	}
	return out, rows.Err()
}

// HistogramBucketSQL returns the SQL expression of a row's bucket index
// for ScanHistogram: the Unix milliseconds encoded in the id column,
// ((id >> 22) + storage.SnowflakeEpochMillis), divided by the bucket
// width, whose SQL (a placeholder) is width, with the integer division
// operator div ("/" or MySQL's "DIV").
func HistogramBucketSQL(width, div string) string {
	return "(((id >> 22) + " + fmt.Sprint(storage.SnowflakeEpochMillis) + ") " + div + " " + width + ")"
}
