package mysql_test

import (
	"context"
	"database/sql"
	"sync"
	"testing"

	_ "github.com/go-sql-driver/mysql"

	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/mysql"
	"github.com/gocap/gocap/storage/storagetest"
)

// newDriver returns a migrated driver on tables of its own, dropped when
// the test ends.
func newDriver(t *testing.T) (*mysql.Driver, *sql.DB) {
	t.Helper()
	dsn := testenv.MySQLDSN(t)
	packetOnce.Do(func() { packetErr = raisePacketLimit(dsn) })
	if packetErr != nil {
		t.Fatalf("the 16 MiB payload test needs max_allowed_packet >= 64 MiB on the server: %v", packetErr)
	}
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	prefix := testenv.Name("gocap_st") + "_"
	t.Cleanup(func() {
		for _, tb := range []string{"published", "received", "instances"} {
			db.Exec("DROP TABLE IF EXISTS `" + prefix + tb + "`")
		}
		db.Close()
	})
	d := mysql.New(db, mysql.Options{TablePrefix: prefix})
	if err := d.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return d, db
}

var (
	packetOnce sync.Once
	packetErr  error
)

// raisePacketLimit makes the server accept 16 MiB bodies: MariaDB's default
// max_allowed_packet is exactly 16 MiB, which a 16 MiB body plus the rest
// of the statement exceeds. It applies to connections opened afterwards.
func raisePacketLimit(dsn string) error {
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	var cur int64
	if err := db.QueryRow("SELECT @@GLOBAL.max_allowed_packet").Scan(&cur); err != nil {
		return err
	}
	if cur >= 64<<20 {
		return nil
	}
	_, err = db.Exec("SET GLOBAL max_allowed_packet = ?", 64<<20)
	return err
}

func TestConformance(t *testing.T) {
	dbs := map[storage.Driver[*sql.Tx]]*sql.DB{}
	storagetest.Run(t, storagetest.Harness[*sql.Tx]{
		New: func(t *testing.T) storage.Driver[*sql.Tx] {
			d, db := newDriver(t)
			dbs[d] = db
			return d
		},
		Begin: func(ctx context.Context, t *testing.T, d storage.Driver[*sql.Tx]) (*sql.Tx, func() error, func() error) {
			tx, err := dbs[d].BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			return tx, tx.Commit, tx.Rollback
		},
		LargeBody: 16 << 20,
	})
}

func TestMigrateConcurrentlyAndTwice(t *testing.T) {
	d, _ := newDriver(t)
	errs := make(chan error, 4)
	for range 4 {
		go func() { errs <- d.Migrate(context.Background()) }()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent Migrate: %v", err)
		}
	}
}
