package mysql

import (
	"fmt"
	"time"
)

// dbTime formats t for a DATETIME(6) column, in UTC.
func dbTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000000") }

// nullTime formats t, or NULL when t is zero.
func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return dbTime(t)
}

// timeCol scans a DATETIME column whatever the DSN's parseTime setting.
type timeCol struct{ t *time.Time }

// Scan implements sql.Scanner.
func (c timeCol) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		*c.t = time.Time{}
	case time.Time:
		// parseTime=true: the driver read it in the DSN's loc; the wall
		// clock is UTC.
		*c.t = time.Date(x.Year(), x.Month(), x.Day(), x.Hour(), x.Minute(), x.Second(), x.Nanosecond(), time.UTC)
	case []byte:
		return c.parse(string(x))
	case string:
		return c.parse(x)
	default:
		return fmt.Errorf("mysql: cannot scan %T into a time", v)
	}
	return nil
}

func (c timeCol) parse(s string) error {
	t, err := time.ParseInLocation("2006-01-02 15:04:05.999999", s, time.UTC)
	if err != nil {
		return fmt.Errorf("mysql: reading time %q: %w", s, classify(err))
	}
	*c.t = t
	return nil
}

// timeDest is the sqlstore.TimeDest of DATETIME columns.
func timeDest(t *time.Time) any { return timeCol{t} }
