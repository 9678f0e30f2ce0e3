// Package ids makes the snowflake ids that identify gocap's messages and
// rows (storage.IDTime reads the time encoded in one), and lease tokens.
package ids

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"

	"github.com/bwmarrin/snowflake"
)

// MaxNode is the largest snowflake node id.
const MaxNode = 1023

// Generator makes unique ids for one node. It is safe for concurrent use.
type Generator struct {
	node *snowflake.Node
	id   int64
}

// NewGenerator returns a generator for node id node (0..1023). A negative
// node picks one at random.
func NewGenerator(node int64) (*Generator, error) {
	if node < 0 {
		node = RandomNode()
	}
	if node > MaxNode {
		return nil, fmt.Errorf("ids: node id %d out of range 0..%d", node, MaxNode)
	}
	n, err := snowflake.NewNode(node)
	if err != nil {
		return nil, fmt.Errorf("ids: node id %d: %w", node, err)
	}
	return &Generator{node: n, id: node}, nil
}

// Next returns a new id.
func (g *Generator) Next() int64 { return g.node.Generate().Int64() }

// Node returns the generator's node id.
func (g *Generator) Node() int64 { return g.id }

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
