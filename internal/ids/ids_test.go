package ids

import (
	"testing"
	"time"

	"github.com/gocap/gocap/storage"
)

// The generator's epoch is the one the storage contract documents.
func TestIDsEncodeTheirTime(t *testing.T) {
	g, err := NewGenerator(-1)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now().Add(-time.Millisecond)
	id := g.Next()
	at := storage.IDTime(id)
	if at.Before(before.Truncate(time.Millisecond)) || at.After(time.Now()) {
		t.Errorf("id %d encodes %v, made at %v", id, at, before)
	}
	if m := storage.MinIDAt(at); m > id || storage.MinIDAt(at.Add(time.Millisecond)) <= id {
		t.Errorf("MinIDAt(%v) = %d does not bound id %d", at, m, id)
	}
	if Token() == 0 {
		t.Error("zero token")
	}
}

func TestRenew(t *testing.T) {
	g, err := NewGenerator(7)
	if err != nil {
		t.Fatal(err)
	}
	id := g.Next()
	if got := NodeOf(id); got != 7 {
		t.Fatalf("NodeOf(an id of node 7) = %d", got)
	}
	node, moved := g.Renew(7)
	if !moved || node == 7 || node < 0 || node > MaxNode || g.Node() != node {
		t.Fatalf("Renew(7) on node 7 = %d, %v; Node() = %d; want a move to another node in range", node, moved, g.Node())
	}
	if got := NodeOf(g.Next()); got != node {
		t.Errorf("an id after Renew is of node %d, want %d", got, node)
	}
	// A second Renew for the same collision (a concurrent caller that
	// also found an id of node 7 taken) leaves the generator where it is.
	if again, moved := g.Renew(7); moved || again != node {
		t.Errorf("Renew(7) again = %d, %v; want %d, false", again, moved, node)
	}
}

// Renew, Next and NodeOf from several goroutines at once (run with -race:
// NodeOf once read variables of the snowflake package that a renewal
// writes).
func TestRenewConcurrent(t *testing.T) {
	g, err := NewGenerator(7)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	for range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 200 {
				id := g.Next()
				g.Renew(NodeOf(id))
			}
		}()
	}
	for range 4 {
		<-done
	}
	if n := g.Node(); n < 0 || n > MaxNode {
		t.Errorf("node %d out of range", n)
	}
}

// Ids keep growing across a renewal: a key's sequence is the order of its
// messages' ids, and the node's bits lie below the time's, so an id of the
// new node made in the millisecond of the old one's last could be
// smaller.
func TestRenewKeepsIDsIncreasing(t *testing.T) {
	for range 20 {
		g, err := NewGenerator(MaxNode) // every other node is smaller
		if err != nil {
			t.Fatal(err)
		}
		before := g.Next()
		g.Renew(MaxNode)
		if after := g.Next(); after <= before {
			t.Fatalf("id after the renewal %d (node %d) <= id before it %d (node %d)", after, NodeOf(after), before, NodeOf(before))
		}
	}
}
