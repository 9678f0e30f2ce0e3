package storage_test

import (
	"context"
	"testing"

	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/storagetest"
)

// TestThirdPartyBackendConformance runs the conformance suite against
// MemStore, a backend built on the public packages only: what a third
// party writes to check its own storage.
func TestThirdPartyBackendConformance(t *testing.T) {
	storagetest.Run(t, storagetest.Harness[*Tx]{
		New: func(t *testing.T) storage.Driver[*Tx] {
			return NewMemStore()
		},
		Begin: func(ctx context.Context, t *testing.T, d storage.Driver[*Tx]) (*Tx, func() error, func() error) {
			tx := d.(*MemStore).Begin()
			return tx, tx.Commit, tx.Rollback
		},
	})
}
