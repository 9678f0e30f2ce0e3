package postgres

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gocap/gocap/internal/sqlstore"
)

// classify returns err wrapped with storage.ErrPermanent when PostgreSQL
// refused the statement for a reason that running it again cannot fix,
// judged by the class of its SQLSTATE:
//
//   - 22 data exception (invalid UTF-8 22021, \u0000 in jsonb 22P05, a
//     value out of range);
//   - 23 integrity constraint violation; the conflicts the driver expects
//     (a received duplicate, a heartbeat) are resolved by ON CONFLICT and
//     raise none, and a unique violation of the primary key of the
//     published or received table, an id stored already, is also
//     storage.ErrIDTaken;
//   - 42 syntax error or access rule violation (an undefined table or
//     column, a denied privilege: a bug or a missing migration);
//   - 54 program limit exceeded (an index row over the btree limit, 54000).
//
// Every other error is returned as it is, as transient: class 08
// (connection exception), 40 (serialization failure 40001, deadlock
// 40P01), 53 (insufficient resources), 57 (operator intervention: a
// cancelled statement 57014, admin shutdown 57P01), the other classes, and
// errors that do not come from the server (network, context).
func classify(err error) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || len(pe.Code) < 2 {
		return err
	}
	if pe.Code == "23505" && (pe.ConstraintName == "published_pkey" || pe.ConstraintName == "received_pkey") {
		return sqlstore.IDTaken(err)
	}
	switch pe.Code[:2] {
	case "22", "23", "42", "54":
		return sqlstore.Permanent(err)
	}
	return err
}
