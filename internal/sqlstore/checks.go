package sqlstore

import (
	"errors"
	"fmt"
	"time"

	"github.com/gocap/gocap/storage"
)

// Tables holds one value of T per message table, for instance a driver's
// statements for that table.
type Tables[T any] struct {
	Published, Received T
}

// For returns the value for kind, or an error for an unknown kind.
func (t *Tables[T]) For(kind storage.Kind) (*T, error) {
	switch kind {
	case storage.Published:
		return &t.Published, nil
	case storage.Received:
		return &t.Received, nil
	default:
		return nil, fmt.Errorf("unknown message kind %d", kind)
	}
}

// CheckClaim returns an error when req breaks the contract of
// storage.Store.Claim: a limit that is not positive, a zero token, or a
// version that fails storage.CheckVersion.
func CheckClaim(req storage.ClaimRequest) error {
	if req.Limit <= 0 || req.Token == 0 {
		return fmt.Errorf("claim: limit %d must be positive and token %d non-zero", req.Limit, req.Token)
	}
	if err := storage.CheckVersion(req.Version); err != nil {
		return fmt.Errorf("claim: %w", err)
	}
	return nil
}

// CheckDue returns an error when req breaks the contract of
// storage.Store.NextDue: a version that fails storage.CheckVersion.
func CheckDue(req storage.DueRequest) error {
	if err := storage.CheckVersion(req.Version); err != nil {
		return fmt.Errorf("next due: %w", err)
	}
	return nil
}

// MessageVersion returns m's version, or an error (marked
// storage.ErrPermanent) naming the message when it fails
// storage.CheckVersion.
func MessageVersion(m *storage.Message) (string, error) {
	if err := storage.CheckVersion(m.Version); err != nil {
		return "", fmt.Errorf("message %d: %w: %w", m.ID, err, storage.ErrPermanent)
	}
	return m.Version, nil
}

// CheckReceivedToken returns an error when token, the lease of
// storage.Store.InsertReceived, is zero: a zero LeaseToken means
// "unclaimed".
func CheckReceivedToken(token int64) error {
	if token == 0 {
		return errors.New("insert received: token must be non-zero")
	}
	return nil
}

// CheckDeleteExpired returns an error when limit, the batch size of
// storage.Store.DeleteExpired, is not positive.
func CheckDeleteExpired(limit int) error {
	if limit <= 0 {
		return fmt.Errorf("delete expired: limit %d must be positive", limit)
	}
	return nil
}

// HistogramRange returns what a storage's histogram query takes for the
// arguments of storage.Store.Histogram: the smallest id of a row added at
// or after since (storage.MinIDAt), and the bucket width in milliseconds.
// It returns an error for a bucket shorter than a millisecond.
func HistogramRange(since time.Time, bucket time.Duration) (minID, bucketMillis int64, err error) {
	bucketMillis = bucket.Milliseconds()
	if bucketMillis <= 0 {
		return 0, 0, fmt.Errorf("histogram: bucket %v is shorter than a millisecond", bucket)
	}
	return storage.MinIDAt(since), bucketMillis, nil
}

// ErrNilTx is returned by InsertPublishedTx when it is given no transaction.
var ErrNilTx = errors.New("insert published: transaction is nil")

// CheckTx returns ErrNilTx when tx is the zero value of its type: a nil
// *sql.Tx, or a nil pgx.Tx interface.
func CheckTx[TTx comparable](tx TTx) error {
	var zero TTx
	if tx == zero {
		return ErrNilTx
	}
	return nil
}
