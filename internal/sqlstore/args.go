package sqlstore

import (
	"strings"

	"github.com/gocap/gocap/storage"
)

// Placeholders returns n question-mark placeholders separated by commas.
func Placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// PairPlaceholders returns n pairs of question-mark placeholders, "(?, ?)",
// separated by commas: a list of (id, lease_token) row values.
func PairPlaceholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("(?, ?), ", n), ", ")
}

// IDArgs returns prefix followed by ids, as query arguments.
func IDArgs(ids []int64, prefix ...any) []any {
	args := make([]any, 0, len(prefix)+len(ids))
	args = append(args, prefix...)
	for _, id := range ids {
		args = append(args, id)
	}
	return args
}

// LeaseArgs returns prefix followed by the id and token of each lease, as
// the arguments of a list made by PairPlaceholders.
func LeaseArgs(leases []storage.Lease, prefix ...any) []any {
	args := make([]any, 0, len(prefix)+2*len(leases))
	args = append(args, prefix...)
	for _, l := range leases {
		args = append(args, l.ID, l.Token)
	}
	return args
}

// LeaseArrays returns the ids and tokens of leases as two arrays, for a
// storage that passes them as array parameters (PostgreSQL's unnest).
func LeaseArrays(leases []storage.Lease) (ids, tokens []int64) {
	ids = make([]int64, len(leases))
	tokens = make([]int64, len(leases))
	for i, l := range leases {
		ids[i], tokens[i] = l.ID, l.Token
	}
	return ids, tokens
}

// CompletedArrays returns the ids and tokens of the leases of done as
// two arrays, as LeaseArrays does.
func CompletedArrays(done []storage.Completed) (ids, tokens []int64) {
	ids = make([]int64, len(done))
	tokens = make([]int64, len(done))
	for i, c := range done {
		ids[i], tokens[i] = c.ID, c.Token
	}
	return ids, tokens
}

// CompletedLeases returns the leases of done.
func CompletedLeases(done []storage.Completed) []storage.Lease {
	out := make([]storage.Lease, len(done))
	for i, c := range done {
		out[i] = c.Lease
	}
	return out
}

// ValidTexts returns the strings of ss as storage.ValidText makes them:
// ss itself when they are all valid already.
func ValidTexts(ss []string) []string {
	for i, s := range ss {
		if v := storage.ValidText(s); v != s {
			out := append([]string(nil), ss...)
			out[i] = v
			for j := i + 1; j < len(out); j++ {
				out[j] = storage.ValidText(out[j])
			}
			return out
		}
	}
	return ss
}
