package sqlstore

import (
	"database/sql"
	"reflect"
	"testing"
	"time"

	"github.com/gocap/gocap/storage"
)

func TestListBuild(t *testing.T) {
	content := func(ph, text string) (string, any) { return "instr(body, " + ph + ") > 0", []byte(text) }
	for _, c := range []struct {
		style  Placeholder
		f      storage.Filter
		clause string
		args   []any
	}{
		{Question, storage.Filter{Kind: storage.Published}, " ORDER BY id DESC LIMIT ?", []any{DefaultListLimit}},
		{Dollar, storage.Filter{Kind: storage.Published, Limit: 5, BeforeID: 9}, " WHERE id < $1 ORDER BY id DESC LIMIT $2", []any{int64(9), 5}},
		{Dollar, storage.Filter{Kind: storage.Published, Status: storage.StatusFailed, Name: "n\xff", Group: "ignored", MsgID: "42", Content: "c"},
			" WHERE status = $1 AND name = $2 AND id = $3 AND instr(body, $4) > 0 ORDER BY id DESC LIMIT $5",
			[]any{"Failed", `n\xff`, int64(42), []byte("c"), DefaultListLimit}},
		{Question, storage.Filter{Kind: storage.Received, Group: "g", MsgID: "m"},
			" WHERE grp = ? AND msg_id = ? ORDER BY id DESC LIMIT ?", []any{"g", "m", DefaultListLimit}},
	} {
		clause, args, ok := List{Placeholder: c.style, Content: content}.Build(c.f)
		if !ok || clause != c.clause || !reflect.DeepEqual(args, c.args) {
			t.Errorf("Build(%+v) = %q %#v %v, want %q %#v", c.f, clause, args, ok, c.clause, c.args)
		}
	}
	if _, _, ok := (List{Placeholder: Dollar, Content: content}).Build(storage.Filter{Kind: storage.Published, MsgID: "x1"}); ok {
		t.Error("a published message id that is not a number can match")
	}
	upper := func(s string) string { return s + "!" }
	_, args, _ := List{Placeholder: Question, Name: upper, Group: upper}.Build(storage.Filter{Kind: storage.Received, Name: "a", Group: "b"})
	if args[0] != "a!" || args[1] != "b!" {
		t.Errorf("Name and Group not applied: %v", args)
	}
}

func TestChecks(t *testing.T) {
	if CheckClaim(storage.ClaimRequest{Limit: 1, Token: 1}) != nil || CheckClaim(storage.ClaimRequest{Limit: 0, Token: 1}) == nil ||
		CheckClaim(storage.ClaimRequest{Limit: 1}) == nil {
		t.Error("CheckClaim")
	}
	if CheckDeleteExpired(1) != nil || CheckDeleteExpired(0) == nil {
		t.Error("CheckDeleteExpired")
	}
	if _, _, err := HistogramRange(time.Now(), time.Microsecond); err == nil {
		t.Error("HistogramRange accepts a bucket under a millisecond")
	}
	since := time.Now()
	if minID, ms, err := HistogramRange(since, time.Minute); err != nil || ms != 60_000 || minID != storage.MinIDAt(since) {
		t.Errorf("HistogramRange: %d %d %v", minID, ms, err)
	}
	if CheckTx((*sql.Tx)(nil)) == nil || CheckTx(&sql.Tx{}) != nil {
		t.Error("CheckTx of *sql.Tx")
	}
	type iface interface{ Commit() error }
	if CheckTx[iface](nil) == nil {
		t.Error("CheckTx of a nil interface")
	}
	tables := Tables[string]{Published: "p", Received: "r"}
	if p, err := tables.For(storage.Published); err != nil || *p != "p" {
		t.Error("Tables.For(Published)")
	}
	if r, err := tables.For(storage.Received); err != nil || *r != "r" {
		t.Error("Tables.For(Received)")
	}
	if _, err := tables.For(0); err == nil {
		t.Error("Tables.For(0): no error")
	}
}
