package mysql_test

import (
	"context"
	"database/sql"
	"log"
	"strconv"
	"time"

	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/mysql"
)

// A message row inserted with the application's own transaction: it exists,
// and will be sent, only if the order commits.
func ExampleDriver_InsertPublishedTx() {
	ctx := context.Background()
	db, err := sql.Open("mysql", "app:secret@tcp(127.0.0.1:3306)/shop?parseTime=true&loc=UTC&interpolateParams=true")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	store := mysql.New(db, mysql.Options{TablePrefix: "gocap_"})
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}

	gen, err := ids.NewGenerator(-1)
	if err != nil {
		log.Fatal(err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "INSERT INTO orders (id, total) VALUES (?, ?)", 42, "9.90"); err != nil {
		log.Fatal(err)
	}
	id := gen.Next()
	now := time.Now().UTC()
	msg := &storage.Message{
		ID: id, Kind: storage.Published, MsgID: strconv.FormatInt(id, 10), Name: "order.paid",
		Headers: map[string]string{"cap-msg-id": strconv.FormatInt(id, 10), "cap-msg-name": "order.paid"},
		Body:    []byte(`{"order":42}`), Added: now, NextAttemptAt: now,
	}
	if err := store.InsertPublishedTx(ctx, tx, []*storage.Message{msg}, storage.InsertOptions{}); err != nil {
		log.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		log.Fatal(err)
	}
}
