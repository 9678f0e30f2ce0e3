package sqlstore

import (
	"strconv"
	"strings"

	"github.com/gocap/gocap/storage"
)

// Placeholder returns the placeholder of a statement's nth argument,
// counted from 1.
type Placeholder func(n int) string

// Question is the placeholder style of MySQL and SQLite: "?".
func Question(int) string { return "?" }

// Dollar is the placeholder style of PostgreSQL: "$1", "$2", ….
func Dollar(n int) string { return "$" + strconv.Itoa(n) }

// DefaultListLimit is the page size of a listing whose Filter.Limit is
// zero or negative.
const DefaultListLimit = 50

// List builds the filter of the dashboard's listing (storage.Store.List)
// for one storage: every SQL storage selects the same rows the same way,
// and differs only in its placeholders, in how it stores names and groups,
// and in how it searches a body.
type List struct {
	// Placeholder is the storage's placeholder style.
	Placeholder Placeholder
	// Name and Group make a name or group to filter by the text the
	// storage stores for it, so that it matches. Nil means
	// storage.ValidText.
	Name, Group func(string) string
	// Content returns the condition that a row's body contains text, with
	// ph the placeholder of its argument, and that argument.
	Content func(ph, text string) (cond string, arg any)
}

// Build returns the clause to append to a storage's SELECT of all
// columns — " WHERE … ORDER BY id DESC LIMIT n", the WHERE only when f
// filters — and its arguments. ok is false when no row can match: a
// published message id that is not a number.
//
// A received message id is matched as storage.StorableMsgID stores it; a
// published one is the decimal form of the row id.
func (l List) Build(f storage.Filter) (clause string, args []any, ok bool) {
	var where []string
	add := func(col string, v any) {
		args = append(args, v)
		where = append(where, col+" = "+l.Placeholder(len(args)))
	}
	if f.Status != "" {
		add("status", string(f.Status))
	}
	if f.Name != "" {
		add("name", textOr(l.Name)(f.Name))
	}
	if f.Group != "" && f.Kind == storage.Received {
		add("grp", textOr(l.Group)(f.Group))
	}
	if f.MsgID != "" {
		if f.Kind == storage.Received {
			add("msg_id", storage.StorableMsgID(f.MsgID))
		} else {
			id, err := strconv.ParseInt(f.MsgID, 10, 64)
			if err != nil {
				return "", nil, false
			}
			add("id", id)
		}
	}
	if f.Version != "" {
		add("version", f.Version)
	}
	if f.Content != "" {
		cond, arg := l.Content(l.Placeholder(len(args)+1), f.Content)
		args = append(args, arg)
		where = append(where, cond)
	}
	if f.BeforeID > 0 {
		args = append(args, f.BeforeID)
		where = append(where, "id < "+l.Placeholder(len(args)))
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultListLimit
	}
	args = append(args, limit)
	if len(where) > 0 {
		clause = " WHERE " + strings.Join(where, " AND ")
	}
	return clause + " ORDER BY id DESC LIMIT " + l.Placeholder(len(args)), args, true
}

func textOr(f func(string) string) func(string) string {
	if f == nil {
		return storage.ValidText
	}
	return f
}
