package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/gocap/gocap/storage"
)

// Tables returns the tables the gauges and the health report read.
func Tables() []storage.Kind { return []storage.Kind{storage.Published, storage.Received} }

// OldestDue returns the NextAttemptAt of the row of kind that has waited
// longest to be sent or handled (Scheduled, or Delayed and due; a row in
// flight counts until its outcome is recorded), and false if none is due
// at now, among the rows of version (those a processor of that version
// claims). It is one [storage.Store.NextDue] read, one entry of the index
// of pending rows that the claim uses, so the storage contract needs
// nothing new for it.
func OldestDue(ctx context.Context, s storage.Store, kind storage.Kind, version string, now time.Time) (time.Time, bool, error) {
	// Every row's NextAttemptAt is after the Unix epoch.
	t, err := s.NextDue(ctx, kind, storage.DueRequest{After: time.Unix(0, 0).UTC(), Version: version})
	if err != nil {
		return time.Time{}, false, fmt.Errorf("reading the oldest due %s row: %w", kind, err)
	}
	if t.IsZero() || t.After(now) {
		return time.Time{}, false, nil
	}
	return t, true, nil
}

// gaugeReader reads the gauges' values from the storage at most once per
// interval, however often a metric reader collects.
type gaugeReader struct {
	store    storage.Store
	interval time.Duration
	log      *slog.Logger
	version  string // of the rows whose oldest due time is read

	mu     sync.Mutex
	readAt time.Time
	ok     bool // the last read succeeded
	counts map[storage.Kind]storage.Counts
	oldest map[storage.Kind]time.Time // zero: none due
}

// observe reports the last values read, reading them again first if the
// last read is older than the interval. After a failed read it reports
// nothing until a read succeeds.
func (g *gaugeReader) observe(ctx context.Context, o metric.Observer, rows metric.Int64Observable, age metric.Float64Observable) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	if g.readAt.IsZero() || now.Sub(g.readAt) >= g.interval {
		g.read(ctx, now)
	}
	if !g.ok {
		return
	}
	for _, kind := range Tables() {
		table := TableKey.String(kind.String())
		c := g.counts[kind]
		for _, st := range storage.Statuses {
			o.ObserveInt64(rows, c.ByStatus[st], metric.WithAttributes(table, StatusKey.String(string(st))))
		}
		var a float64
		if t := g.oldest[kind]; !t.IsZero() {
			a = max(0, now.Sub(t).Seconds())
		}
		o.ObserveFloat64(age, a, metric.WithAttributeSet(attribute.NewSet(table)))
	}
}

func (g *gaugeReader) read(ctx context.Context, now time.Time) {
	ctx, cancel := context.WithTimeout(ctx, gaugeReadTimeout)
	defer cancel()
	g.readAt = now
	counts := map[storage.Kind]storage.Counts{}
	oldest := map[storage.Kind]time.Time{}
	var errs []error
	for _, kind := range Tables() {
		c, err := storage.CountsOf(ctx, g.store, kind)
		if err != nil {
			errs = append(errs, fmt.Errorf("counting %s rows: %w", kind, err))
			continue
		}
		counts[kind] = c
		t, due, err := OldestDue(ctx, g.store, kind, g.version, now.UTC())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if due {
			oldest[kind] = t
		}
	}
	if err := errors.Join(errs...); err != nil {
		g.ok = false
		g.log.Warn("gocap: reading the storage gauges failed; they are not reported until a read succeeds", "err", err)
		return
	}
	g.ok, g.counts, g.oldest = true, counts, oldest
}
