package sqlite

import (
	"fmt"
	"time"
)

// us is a time as Unix microseconds, the form of every time column.
func us(t time.Time) int64 { return t.UTC().UnixMicro() }

// nullUs is us(t), or NULL for the zero time.
func nullUs(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return us(t)
}

// timeDest is the sqlstore.TimeDest of time columns.
func timeDest(t *time.Time) any { return usTime{t} }

// usTime scans a time column of Unix microseconds, NULL as the zero time.
type usTime struct{ t *time.Time }

// Scan implements sql.Scanner.
func (c usTime) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		*c.t = time.Time{}
	case int64:
		*c.t = time.UnixMicro(x).UTC()
	default:
		return fmt.Errorf("sqlite: cannot scan %T into a time", v)
	}
	return nil
}
