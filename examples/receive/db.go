package main

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/mysql"
	"github.com/gocap/gocap/storage/postgres"
)

// database is the PostgreSQL pool or the MySQL handle of a run. A store
// is a PostgreSQL schema, or a MySQL table prefix (store + "_").
type database struct {
	name string
	pool *pgxpool.Pool
	sql  *sql.DB
}

func openDB(ctx context.Context, name string) (*database, error) {
	d := &database{name: name}
	switch name {
	case "postgres":
		cfg, err := pgxpool.ParseConfig(env("GOCAP_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"))
		if err != nil {
			return nil, err
		}
		cfg.MaxConns = 24 // the inbox's workers and gocap's processor each need connections
		if d.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
			return nil, err
		}
		return d, d.pool.Ping(ctx)
	case "mysql":
		db, err := sql.Open("mysql", env("GOCAP_MYSQL_DSN", "root@tcp(127.0.0.1:3306)/test"))
		if err != nil {
			return nil, err
		}
		db.SetMaxOpenConns(24)
		db.SetMaxIdleConns(24)
		d.sql = db
		return d, db.PingContext(ctx)
	}
	return nil, fmt.Errorf("-db %q: want postgres or mysql", name)
}

// close drops the stores and closes the connections.
func (d *database) close(stores []string) {
	ctx := context.Background()
	for _, s := range stores {
		if d.pool != nil {
			d.pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+s+" CASCADE")
		} else {
			for _, t := range []string{"published", "received", "instances"} {
				d.sql.ExecContext(ctx, "DROP TABLE IF EXISTS "+s+"_"+t)
			}
		}
	}
	if d.pool != nil {
		d.pool.Close()
	} else {
		d.sql.Close()
	}
}

func (d *database) postgres(store string) *postgres.Driver {
	return postgres.New(d.pool, postgres.Options{Schema: store, Logger: quiet})
}

func (d *database) mysql(store string) *mysql.Driver {
	return mysql.New(d.sql, mysql.Options{TablePrefix: store + "_", Logger: quiet})
}

// storeOf returns gocap's storage of store, for Migrate and Counts.
func (d *database) storeOf(store string) storage.Store {
	if d.pool != nil {
		return d.postgres(store)
	}
	return d.mysql(store)
}

// received is the name of store's received table.
func (d *database) received(store string) string {
	if d.pool != nil {
		return store + ".received"
	}
	return store + "_received"
}

// inboxRow is what the hand-rolled inbox stores of a delivery.
type inboxRow struct {
	id                 int64
	msgID, group, name string
	headers            string // JSON
	body               []byte
	added, expires     time.Time
}

// insertInbox runs the hand-rolled inbox's transaction for one delivery:
// the de-duplicating insert of the message as handled (the no-op handler
// would run here, in the same transaction), then the commit.
func (d *database) insertInbox(ctx context.Context, store string, r inboxRow) error {
	if d.pool != nil {
		return pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO `+d.received(store)+`
				(id, msg_id, grp, name, headers, body, status, added, next_attempt_at, expires_at)
				VALUES ($1, $2, $3, $4, $5, $6, 'Succeeded', $7, $7, $8)
				ON CONFLICT (msg_id, grp) DO NOTHING`,
				r.id, r.msgID, r.group, r.name, r.headers, r.body, r.added, r.expires)
			return err
		})
	}
	tx, err := d.sql.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT IGNORE INTO `+d.received(store)+`
		(id, msg_id, grp, name, headers, body, status, last_error, added, next_attempt_at, expires_at)
		VALUES (?, ?, ?, ?, ?, ?, 'Succeeded', '', ?, ?, ?)`,
		r.id, r.msgID, r.group, r.name, r.headers, r.body, r.added, r.added, r.expires)
	if err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// pending reports whether store's received table has rows not yet handled,
// with a query its index of pending rows answers at once.
func (d *database) pending(ctx context.Context, store string) (bool, error) {
	var more bool
	if d.pool != nil {
		err := d.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+d.received(store)+
			` WHERE status IN ('Scheduled', 'Delayed'))`).Scan(&more)
		return more, err
	}
	err := d.sql.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM `+d.received(store)+
		` WHERE due_at IS NOT NULL)`).Scan(&more)
	return more, err
}

// rows counts store's received rows (after a measurement).
func (d *database) rows(ctx context.Context, store string) (int64, error) {
	var n int64
	q := "SELECT count(*) FROM " + d.received(store)
	if d.pool != nil {
		return n, d.pool.QueryRow(ctx, q).Scan(&n)
	}
	return n, d.sql.QueryRowContext(ctx, q).Scan(&n)
}
