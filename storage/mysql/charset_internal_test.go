package mysql

import (
	"database/sql"
	"errors"
	"strings"
	"testing"

	"github.com/gocap/gocap/storage"
)

func TestCheckCharset(t *testing.T) {
	null := sql.NullString{}
	str := func(s string) sql.NullString { return sql.NullString{String: s, Valid: true} }
	for _, c := range []struct {
		client, conn string
		results      sql.NullString
		ok           bool
	}{
		{"utf8mb4", "utf8mb4", str("utf8mb4"), true},
		{"UTF8MB4", "utf8mb4", null, true}, // results unconverted
		{"utf8mb4", "utf8mb4", str("binary"), true},
		{"utf8mb3", "utf8mb3", str("utf8mb3"), false}, // charset=utf8 on MariaDB 10.6+, MySQL 8.0.30+
		{"utf8", "utf8", str("utf8"), false},          // charset=utf8 on older servers
		{"utf8mb4", "utf8mb4", str("utf8mb3"), false},
		{"latin1", "utf8mb4", str("utf8mb4"), false},
		{"utf8mb4", "latin1", str("utf8mb4"), false},
	} {
		err := checkCharset(c.client, c.conn, c.results)
		if (err == nil) != c.ok {
			t.Errorf("checkCharset(%q, %q, %v) = %v; want ok %v", c.client, c.conn, c.results, err, c.ok)
		}
		if err != nil && (!strings.Contains(err.Error(), "charset=utf8mb4") || errors.Is(err, storage.ErrPermanent)) {
			t.Errorf("checkCharset(%q, %q, %v) = %v; want an error naming charset=utf8mb4, not permanent", c.client, c.conn, c.results, err)
		}
	}
}
