package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gocap/gocap/outbox"
)

// memory measures (d): the peak RSS of this process while one processor
// dispatches a backlog of n Scheduled rows, then while one subscriber
// receives those n messages from its group's queue.
func (b *bench) memory(ctx context.Context, n int) error {
	s, err := b.schema(ctx)
	if err != nil {
		return err
	}
	if err := b.fill(ctx, s, n, "bench.backlog", "Scheduled", "NULL"); err != nil {
		return err
	}
	// The group's queue, as gocap names it, receives the dispatched
	// backlog; the subscriber reads it afterwards.
	queuePrefix := s + "."
	if err := b.queue(queuePrefix+outbox.DefaultGroup, "bench.backlog"); err != nil {
		return err
	}

	before, reset := resetPeak()
	start := time.Now()
	_, stop, err := b.running(ctx, s, "", outbox.Options{}, nil)
	if err != nil {
		return err
	}
	elapsed, err := b.waitNone(ctx, s, "published", start)
	peak := peakRSS()
	stop()
	if err != nil {
		return err
	}
	fmt.Printf("(d) dispatching a backlog of %d rows: %6.0f msg/s, peak RSS %d MB (%d MB before; target < 200 MB)%s\n",
		n, float64(n)/elapsed.Seconds(), peak>>20, before>>20, note(reset))

	type order struct {
		ID       int    `json:"id"`
		Amount   string `json:"amount"`
		Currency string `json:"currency"`
	}
	var handled atomic.Int64
	before, reset = resetPeak()
	start = time.Now()
	_, stop, err = b.running(ctx, s, queuePrefix, outbox.Options{}, func(ob *outbox.Outbox[pgx.Tx]) error {
		return outbox.Subscribe(ob, "bench.backlog", func(context.Context, outbox.Received[order]) error {
			handled.Add(1)
			return nil
		})
	})
	if err != nil {
		return err
	}
	deadline := start.Add(b.timeout)
	for handled.Load() < int64(n) && err == nil {
		if time.Now().After(deadline) {
			err = fmt.Errorf("%d of %d messages handled after %v", handled.Load(), n, b.timeout)
		}
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err == nil {
		elapsed, err = b.waitNone(ctx, s, "received", start)
	}
	peak = peakRSS()
	stop()
	if err != nil {
		return err
	}
	var succeeded int64
	if err := b.pool.QueryRow(ctx, "SELECT count(*) FROM "+s+".received WHERE status = 'Succeeded'").Scan(&succeeded); err != nil {
		return err
	}
	if succeeded != int64(n) {
		return fmt.Errorf("%d of %d received rows Succeeded", succeeded, n)
	}
	fmt.Printf("(d) receiving %d messages until every row is Succeeded: %6.0f msg/s, peak RSS %d MB (%d MB before; target < 200 MB)%s\n",
		n, float64(n)/elapsed.Seconds(), peak>>20, before>>20, note(reset))
	return nil
}

func note(reset bool) string {
	if reset {
		return ""
	}
	return " (the peak could not be reset: it is the peak since the process started)"
}

// resetPeak returns what the runtime no longer uses to the OS, resets the
// kernel's peak RSS of this process to its current RSS (writing 5 to
// /proc/self/clear_refs), and returns that RSS in bytes.
func resetPeak() (rss int64, ok bool) {
	debug.FreeOSMemory()
	ok = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
	return procStatus("VmRSS:"), ok
}

// peakRSS returns the peak RSS of this process in bytes: VmHWM, or
// getrusage's maxrss where /proc is not there.
func peakRSS() int64 {
	if v := procStatus("VmHWM:"); v > 0 {
		return v
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		return ru.Maxrss << 10 // kB on Linux
	}
	return 0
}

// procStatus returns the value, in bytes, of a kB field of
// /proc/self/status, or 0.
func procStatus(field string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
