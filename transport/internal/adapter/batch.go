package adapter

import (
	"fmt"
	"time"
)

// Gather appends to batch, which holds the first delivery of a batch,
// what in holds, until batch has size elements or nothing more is waiting
// in in; while nothing is waiting it waits for more until deadline (the
// first delivery's arrival plus the linger). ok is false when in was
// closed: the deliveries gathered can no longer be acknowledged.
//
// A delivery counts as waiting if it comes within grace. A broker client
// that hands deliveries over through an unbuffered channel from a
// goroutine of its own (amqp091-go does) has the next one ready only once
// that goroutine ran again after the last hand-over: a receive that does
// not wait at all would find nothing and end every batch at one delivery.
func Gather[T any](in <-chan T, batch []T, size int, deadline time.Time, grace time.Duration) (_ []T, ok bool) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for len(batch) < size {
		select {
		case d, ok := <-in:
			if !ok {
				return batch, false
			}
			batch = append(batch, d)
			continue
		default:
		}
		wait := max(time.Until(deadline), grace)
		if wait <= 0 {
			return batch, true
		}
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		select {
		case d, ok := <-in:
			if !ok {
				return batch, false
			}
			batch = append(batch, d)
		case <-timer.C:
			return batch, true
		}
	}
	return batch, true
}

// Results returns errs if a batch handler returned one result for each of
// n deliveries. Otherwise it returns n errors, so that every delivery is
// delivered again: a handler that miscounts is a bug, and dropping or
// acknowledging deliveries on a guess could lose messages.
func Results(errs []error, n int) []error {
	if len(errs) == n {
		return errs
	}
	err := fmt.Errorf("the batch handler returned %d results for %d deliveries", len(errs), n)
	errs = make([]error, n)
	for i := range errs {
		errs[i] = err
	}
	return errs
}

// BatchSize returns the size of the batches of a ConsumeBatch called with
// max: max, or def if max is not positive.
func BatchSize(max, def int) int {
	if max <= 0 {
		return def
	}
	return max
}
