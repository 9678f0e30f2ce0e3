// Package ids makes the snowflake ids that identify gocap's messages and
// rows (storage.IDTime reads the time encoded in one), and lease tokens.
package ids

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/bwmarrin/snowflake"
)

// MaxNode is the largest snowflake node id.
const MaxNode = 1023

// Generator makes unique ids for one node. It is safe for concurrent use.
//
// Ids of two generators are unique as long as their nodes differ. When two
// live generators share a node (two processes configured alike, or two
// random picks that met), a store reports the id it was given as taken;
// Renew then moves this generator to another node.
type Generator struct {
	cur atomic.Pointer[node]
}

// node is one snowflake node and its number.
type node struct {
	sf *snowflake.Node
	id int64
	// floor is the least id the node may hand out: a node that replaced
	// another one (Renew) starts in a later millisecond than the last id
	// of the one it replaced, so that ids keep growing.
	floor int64
}

func newNode(id int64) (*node, error) {
	if id < 0 || id > MaxNode {
		return nil, fmt.Errorf("ids: node id %d out of range 0..%d", id, MaxNode)
	}
	n, err := snowflake.NewNode(id)
	if err != nil {
		return nil, fmt.Errorf("ids: node id %d: %w", id, err)
	}
	return &node{sf: n, id: id}, nil
}

// NewGenerator returns a generator for node id node (0..1023). A negative
// node picks one at random.
func NewGenerator(node int64) (*Generator, error) {
	if node < 0 {
		node = RandomNode()
	}
	n, err := newNode(node)
	if err != nil {
		return nil, err
	}
	g := &Generator{}
	g.cur.Store(n)
	return g, nil
}

// Next returns a new id, larger than every id the generator made before.
func (g *Generator) Next() int64 {
	n := g.cur.Load()
	id := n.sf.Generate().Int64()
	for id < n.floor { // within 2 ms of a renewal
		time.Sleep(100 * time.Microsecond)
		id = n.sf.Generate().Int64()
	}
	return id
}

// renewalGap is how far the first id of a renewed node lies past the
// renewal: past every id of the node it replaced, including ids made by
// calls of Next that loaded the old node just before the renewal.
const renewalGap = 2 * time.Millisecond

// Node returns the generator's node id.
func (g *Generator) Node() int64 { return g.cur.Load().id }

// Renew moves the generator to a random node other than collided, if it
// is still on collided (a concurrent Renew for the same collision has not
// moved it yet). It returns the node the generator is on afterwards, and
// whether this call moved it. An id made before the call and found taken
// is remade with Next after it. Ids made after it are larger than those
// made before it (the first ones wait up to renewalGap for that).
func (g *Generator) Renew(collided int64) (node int64, moved bool) {
	for {
		cur := g.cur.Load()
		if cur.id != collided {
			return cur.id, false
		}
		id := RandomNode()
		if id == collided {
			continue
		}
		n, err := newNode(id)
		if err != nil { // cannot happen: id is in range
			panic(err)
		}
		// An id's time is milliseconds since snowflake.Epoch, above the
		// node's and the step's bits.
		ms := time.Now().Add(renewalGap).UnixMilli() - snowflake.Epoch
		n.floor = ms << (snowflake.NodeBits + snowflake.StepBits)
		if g.cur.CompareAndSwap(cur, n) {
			return id, true
		}
	}
}

// RandomNode returns a random node id in 0..MaxNode.
func RandomNode() int64 {
	var b [2]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("ids: reading random bytes: %v", err))
	}
	return int64(binary.BigEndian.Uint16(b[:]) % (MaxNode + 1))
}

// Token returns a random non-zero int64 for lease tokens.
func Token() int64 {
	for {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			panic(fmt.Sprintf("ids: reading random bytes: %v", err))
		}
		if v := int64(binary.BigEndian.Uint64(b[:]) >> 1); v != 0 {
			return v
		}
	}
}

// NodeOf returns the node of a generator that made id. (Not
// snowflake.ID.Node, which reads package variables that every NewNode
// writes: a data race with Renew.)
func NodeOf(id int64) int64 { return id >> snowflake.StepBits & (1<<snowflake.NodeBits - 1) }
