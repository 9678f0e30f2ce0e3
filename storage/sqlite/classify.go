package sqlite

import (
	"errors"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/gocap/gocap/internal/sqlstore"
)

// classify returns err wrapped with storage.ErrPermanent when SQLite
// refused the statement for a reason that running it again cannot fix,
// judged by the primary result code: SQLITE_TOOBIG (a value over
// SQLITE_LIMIT_LENGTH), SQLITE_MISMATCH (a value of the wrong type for an
// INTEGER PRIMARY KEY), SQLITE_CONSTRAINT (the received duplicates the
// driver expects are resolved by ON CONFLICT and raise none;
// SQLITE_CONSTRAINT_PRIMARYKEY, an id stored already, is also
// storage.ErrIDTaken).
//
// Every other error is returned as it is, as transient: SQLITE_BUSY and
// SQLITE_LOCKED (another writer, past the busy timeout), SQLITE_IOERR,
// SQLITE_FULL, and the generic SQLITE_ERROR, whose causes (a syntax error,
// a missing table, but also others) its code does not tell apart.
func classify(err error) error {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return err
	}
	if se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY {
		return sqlstore.IDTaken(err)
	}
	switch se.Code() & 0xff { // the primary code of an extended one
	case sqlite3.SQLITE_TOOBIG, sqlite3.SQLITE_MISMATCH, sqlite3.SQLITE_CONSTRAINT:
		return sqlstore.Permanent(err)
	}
	return err
}
