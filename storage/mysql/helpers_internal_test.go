package mysql

import (
	"database/sql"
	"testing"

	_ "github.com/go-sql-driver/mysql"

	"github.com/gocap/gocap/internal/testenv"
)

// openTestTables opens the test database and returns it with a table
// prefix of name's own; the tables of that prefix are dropped, and the
// database closed, when the test ends.
func openTestTables(t *testing.T, name string) (*sql.DB, string) {
	t.Helper()
	db, err := sql.Open("mysql", testenv.MySQLDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	prefix := testenv.Name(name) + "_"
	t.Cleanup(func() {
		for _, tb := range []string{"published", "received", "instances"} {
			db.Exec("DROP TABLE IF EXISTS `" + prefix + tb + "`")
		}
		db.Close()
	})
	return db, prefix
}
