package engine

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/gocap/gocap/storage"
)

// maxRun bounds the rows of a run: the rows of one ordering key that a
// claim leases together (storage.ClaimRequest.Run), which one worker
// attempts one after the other, in order, and whose successes one write
// records, claiming the key's next run with them (storage.NextClaimer).
// Without runs every row of a key costs a write transaction of its own
// before the next can be claimed, which under SQLite's one writer bounds
// ordered delivery (BENCHMARKS.md, "Where an ordered round of SQLite
// spends its write turns"). A Store may ignore runs.
const maxRun = 16

// sequence identifies the ordered sequence of a keyed row.
type sequence struct{ group, key, version string }

func sequenceOf(m *storage.Message) sequence {
	return sequence{group: m.Group, key: m.OrderingKey, version: m.Version}
}

// units splits claimed rows into the jobs the pool runs: the rows of each
// run (two rows or more of one sequence, which only a claim with runs
// gives) as one job in id order, holding one slot; the other rows in
// batches of batchSize, holding a slot each.
func (p *processor) units(msgs []*storage.Message) []job {
	var count map[sequence]int
	for _, m := range msgs {
		if m.OrderingKey != "" {
			if count == nil {
				count = map[sequence]int{}
			}
			count[sequenceOf(m)]++
		}
	}
	var (
		out   []job
		batch []*storage.Message
		runs  map[sequence][]*storage.Message
		order []sequence
	)
	for _, m := range msgs {
		if k := sequenceOf(m); m.OrderingKey != "" && count[k] > 1 {
			if runs == nil {
				runs = map[sequence][]*storage.Message{}
			}
			if runs[k] == nil {
				order = append(order, k)
			}
			runs[k] = append(runs[k], m)
			continue
		}
		batch = append(batch, m)
		if len(batch) == p.batchSize {
			out = append(out, job{ms: batch, slots: len(batch)})
			batch = nil
		}
	}
	if len(batch) > 0 {
		out = append(out, job{ms: batch, slots: len(batch)})
	}
	for _, k := range order {
		run := runs[k]
		slices.SortFunc(run, func(a, b *storage.Message) int { return cmp.Compare(a.ID, b.ID) })
		out = append(out, job{ms: run, slots: 1, run: true})
	}
	return out
}

// processRun attempts the rows of a run one after the other, in id order,
// each as a job of one row is attempted (handOver included), and hands
// their successes to the completer together when the run ends, so that
// one write records them and claims the key's next run — or before a
// hand-over (a subscription's concurrency limit) runs other rows in this
// worker, which may take longer than the successes' leases. After a row
// whose attempt failed, or did not take place, the rest are released
// without an attempt; so are they when the processor stops, or when too
// little of the run's lease is left for another attempt.
func (p *processor) processRun(work context.Context, run []*storage.Message) {
	var done []completion
	// complete hands done to the completer. One completion per key says
	// that its next rows may be due: the completer claims them once.
	complete := func() {
		for i := range done {
			done[i].keyed = i == len(done)-1
			p.completer.succeeded(done[i])
		}
		done = done[:0]
	}
	for i, m := range run {
		if i > 0 {
			if reason := p.runStop(work, m); reason != "" {
				p.releaseRest(work, run[i:], reason)
				break
			}
		}
		err := p.process(work, []*storage.Message{m}, &done)[0]
		p.handOverFrom(work, m, err, complete)
		if err != nil {
			if i+1 < len(run) {
				p.releaseRest(work, run[i+1:], "not attempted: an earlier row of its ordering key failed or was put off in the same run")
			}
			break
		}
	}
	complete()
}

// runStop returns why the next row m of a run is not to be attempted, or
// "" when it is.
func (p *processor) runStop(work context.Context, m *storage.Message) string {
	p.mu.Lock()
	closing := p.closing
	p.mu.Unlock()
	if closing || work.Err() != nil {
		return "not attempted: the processor stopped during its ordering key's run"
	}
	if !p.leaseOutlasts(m) {
		return "not attempted: too little of its run's lease was left"
	}
	return ""
}

// releaseRest gives back the leases of rows of a run that were not
// attempted: due now, their retry count unchanged, reason their last
// error; the claim loop takes them in their turn.
func (p *processor) releaseRest(work context.Context, ms []*storage.Message, reason string) {
	leases := make([]storage.Lease, len(ms))
	for i, m := range ms {
		leases[i] = storage.Lease{ID: m.ID, Token: m.LeaseToken}
	}
	ctx, cancel := writeContext(work)
	defer cancel()
	if err := p.releaseAt(ctx, leases, time.Now(), reason); err != nil {
		p.log.Warn("gocap: releasing rows of a run that were not attempted failed; they are due again when their lease ends",
			"count", len(ms), "err", err)
	}
	p.Wake()
}
