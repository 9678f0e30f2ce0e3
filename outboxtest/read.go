package outboxtest

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
)

// pageSize is the rows read per page; maxRows bounds the rows of one topic
// an assertion reads.
const (
	pageSize = 500
	maxRows  = 20 * pageSize
)

// lister lists published rows, as storage.Store.List.
type lister func(ctx context.Context, f storage.Filter) ([]*storage.Message, error)

// storeLister lists the committed rows of ob's storage.
func storeLister[TTx any](ob *outbox.Outbox[TTx]) lister {
	return withTopicNames(ob, ob.Store().List)
}

// withTopicNames makes list look for the topic a filter names under the
// name ob stores it with (Options.TopicPrefix).
func withTopicNames[TTx any](ob *outbox.Outbox[TTx], list lister) lister {
	return func(ctx context.Context, f storage.Filter) ([]*storage.Message, error) {
		if f.Name != "" {
			f.Name = ob.TopicName(f.Name)
		}
		return list(ctx, f)
	}
}

// txLister lists the rows tx sees, or says why ob's storage cannot.
func txLister[TTx any](ob *outbox.Outbox[TTx], tx TTx) (lister, error) {
	r, ok := ob.Store().(storage.TxReader[TTx])
	if !ok {
		return nil, fmt.Errorf("the storage %T cannot read inside a transaction of type %v (it does not implement storage.TxReader); "+
			"commit, and assert without Tx", ob.Store(), reflect.TypeFor[TTx]())
	}
	return withTopicNames(ob, func(ctx context.Context, f storage.Filter) ([]*storage.Message, error) {
		return r.ListPublishedTx(ctx, tx, f)
	}), nil
}

// published returns the published rows of topic added at or after since
// (all of them when since is zero), oldest first.
func published(ctx context.Context, list lister, topic string, since time.Time) ([]*storage.Message, error) {
	var minID int64
	if !since.IsZero() {
		minID = storage.MinIDAt(since)
	}
	f := storage.Filter{Kind: storage.Published, Name: topic, Limit: pageSize}
	var out []*storage.Message
	for len(out) < maxRows {
		page, err := list(ctx, f)
		if err != nil {
			return nil, fmt.Errorf("reading the messages published to %q: %w", topic, err)
		}
		for _, m := range page {
			if m.ID < minID {
				slices.Reverse(out)
				return out, nil
			}
			out = append(out, m)
		}
		if len(page) < pageSize {
			slices.Reverse(out)
			return out, nil
		}
		f.BeforeID = page[len(page)-1].ID
	}
	return nil, fmt.Errorf("more than %d messages were published to %q: narrow the assertion with Opts.Since", maxRows, topic)
}

// appTopics returns a function that names a stored topic as the
// application publishes it: without ob's Options.TopicPrefix and its dot.
// A name without the prefix (of another publisher's row in a shared
// table) stays as it is.
func appTopics[TTx any](ob *outbox.Outbox[TTx]) func(stored string) string {
	prefix := ob.TopicName("") // "": no TopicPrefix; else the prefix and a dot
	return func(stored string) string {
		if prefix == "" {
			return stored
		}
		if name, ok := strings.CutPrefix(stored, prefix); ok && name != "" {
			return name
		}
		return stored
	}
}

// newestTopics returns the topics of the newest published rows, named by
// app, newest first and each once, to show what was published when a
// topic was not.
func newestTopics(ctx context.Context, list lister, app func(string) string, since time.Time) []string {
	page, err := list(ctx, storage.Filter{Kind: storage.Published, Limit: 20})
	if err != nil {
		return nil
	}
	var topics []string
	for _, m := range page {
		name := app(m.Name)
		if (since.IsZero() || m.ID >= storage.MinIDAt(since)) && !slices.Contains(topics, name) {
			topics = append(topics, name)
		}
	}
	return topics
}
