package mysql

import (
	"errors"
	"strings"

	"github.com/go-sql-driver/mysql"

	"github.com/gocap/gocap/internal/sqlstore"
)

// classify returns err wrapped with storage.ErrPermanent when the server
// (or the client library) refused the statement for a reason that running
// it again cannot fix:
//
//   - the data: 1048 a NULL in a NOT NULL column, 1264 and 1690 out of
//     range, 1265 data truncated, 1292 incorrect value, 1300 invalid
//     character string, 1364 no default value, 1366 incorrect string value
//     (invalid UTF-8), 1406 data too long, 3140 invalid JSON, 3819 and
//     4025 check constraint;
//   - integrity: 1062 duplicate key (the received duplicates the driver
//     expects are resolved by ON DUPLICATE KEY UPDATE and raise none; a
//     duplicate of a PRIMARY key, an id stored already, is also
//     storage.ErrIDTaken), 1451 and 1452 foreign key;
//   - size: 1153 packet bigger than max_allowed_packet, and
//     mysql.ErrPktTooLarge, the client's own refusal;
//   - the statement: 1054 unknown column, 1064 syntax error, 1146 no such
//     table (a bug or a missing migration).
//
// Every other error is returned as it is, as transient: 1213 deadlock,
// 1205 lock wait timeout, a lost or closed connection (driver.ErrBadConn,
// mysql.ErrInvalidConn, 2006 gone away, 2013 lost during query), network
// and context errors, and any code not listed.
func classify(err error) error {
	if errors.Is(err, mysql.ErrPktTooLarge) {
		return sqlstore.Permanent(err)
	}
	var me *mysql.MySQLError
	if !errors.As(err, &me) {
		return err
	}
	if me.Number == 1062 && strings.HasSuffix(me.Message, "PRIMARY'") {
		// MariaDB: for key 'PRIMARY'; MySQL 8: for key 'table.PRIMARY'.
		return sqlstore.IDTaken(err)
	}
	switch me.Number {
	case 1048, 1264, 1265, 1292, 1300, 1364, 1366, 1406, 1690, 3140, 3819, 4025,
		1062, 1451, 1452,
		1153,
		1054, 1064, 1146:
		return sqlstore.Permanent(err)
	}
	return err
}

// lockConflict reports a deadlock (1213) or a lock wait timeout (1205).
func lockConflict(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && (me.Number == 1213 || me.Number == 1205)
}
