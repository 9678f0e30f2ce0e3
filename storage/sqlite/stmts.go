package sqlite

import (
	"context"
	"database/sql"
	"strconv"
	"sync"
)

// statements holds the driver's prepared statements of its frequent
// queries, one per query text, for as long as the driver lives. SQLite
// parses and plans a statement each time one is prepared, and
// database/sql prepares one for every query on a *sql.DB: parsing and
// planning the claim's and the inserts' statements took a third of the
// CPU of a busy processor (examples/ordering, -cpuprofile), much of it
// inside write transactions, which SQLite's one writer serializes. A
// *sql.Stmt is prepared on each connection once, when first used there.
type statements struct {
	db *sql.DB
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

// get returns the prepared statement of query.
func (s *statements) get(ctx context.Context, query string) (*sql.Stmt, error) {
	s.mu.Lock()
	st, ok := s.m[query]
	s.mu.Unlock()
	if ok {
		return st, nil
	}
	st, err := s.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if prev, ok := s.m[query]; ok {
		st.Close() // prepared meanwhile by another call
		return prev, nil
	}
	if s.m == nil {
		s.m = map[string]*sql.Stmt{}
	}
	s.m[query] = st
	return st, nil
}

// all returns the prepared statements of queries, in order. A
// transaction gets them before it begins and uses them with
// tx.StmtContext, which prepares one on the transaction's connection if
// it is not there yet: preparing one on the *sql.DB while the
// transaction holds a connection would wait forever for a second one
// when the pool has one (SetMaxOpenConns(1), a common setting for
// SQLite).
func (s *statements) all(ctx context.Context, queries ...string) ([]*sql.Stmt, error) {
	out := make([]*sql.Stmt, len(queries))
	for i, q := range queries {
		st, err := s.get(ctx, q)
		if err != nil {
			return nil, err
		}
		out[i] = st
	}
	return out, nil
}

// idList is ids as the JSON array that the statements with a list of ids
// read with json_each, so that their text, and their prepared
// statement, is one whatever the number of ids.
func idList(ids []int64) string {
	b := make([]byte, 0, 2+20*len(ids))
	b = append(b, '[')
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, id, 10)
	}
	return string(append(b, ']'))
}
