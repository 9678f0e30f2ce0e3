package dashboard

import (
	"context"
	"net/http"
	"strconv"

	"github.com/gocap/gocap/storage"
)

// Blocked ordering keys (#18): keys whose first message that is not
// Succeeded is Failed, from a storage.KeyInspector. Under the outbox's
// BlockKey policy the key's later messages wait; requeueing the Failed
// head (once it succeeds) or deleting it lets them go.

// maxBlockedKeys bounds the keys listed per table.
const maxBlockedKeys = 100

// keysData is the blocked keys of both tables; Supported is false when the
// storage cannot list them.
type keysData struct {
	Supported bool
	Tables    []keyTable // published, then received
}

// keyTable is the blocked keys of one table.
type keyTable struct {
	Kind string
	Keys []storage.BlockedKey
}

func (h *Handler) blockedKeys(ctx context.Context) (keysData, error) {
	ki, ok := h.src.Store().(storage.KeyInspector)
	if !ok {
		return keysData{}, nil
	}
	d := keysData{Supported: true}
	for _, kind := range []storage.Kind{storage.Published, storage.Received} {
		ks, err := ki.BlockedKeys(ctx, kind, maxBlockedKeys)
		if err != nil {
			return d, err
		}
		d.Tables = append(d.Tables, keyTable{Kind: kind.String(), Keys: ks})
	}
	return d, nil
}

// keys serves the page of blocked keys.
func (h *Handler) keys(w http.ResponseWriter, r *http.Request) {
	d, err := h.blockedKeys(r.Context())
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, err.Error())
		return
	}
	h.render(w, r, http.StatusOK, "keys", "Blocked keys", "keys", d)
}

// blockedKeyJSON is a blocked key in the JSON API.
type blockedKeyJSON struct {
	Key     string      `json:"ordering_key"`
	Group   string      `json:"group,omitempty"`
	Version string      `json:"version,omitempty"` // the key's sequence is that of one version
	HeadID  string      `json:"head_id"`
	Waiting int64       `json:"waiting"`
	Head    messageJSON `json:"head"`
}

func keysJSON(ks []storage.BlockedKey) []blockedKeyJSON {
	out := make([]blockedKeyJSON, len(ks))
	for i, k := range ks {
		out[i] = blockedKeyJSON{Key: k.OrderingKey, Group: k.Group, Version: k.Version, HeadID: strconv.FormatInt(k.Head.ID, 10),
			Waiting: k.Waiting, Head: toJSON(k.Head)}
	}
	return out
}

// apiKeys serves GET {prefix}/api/keys.
func (h *Handler) apiKeys(w http.ResponseWriter, r *http.Request) {
	d, err := h.blockedKeys(r.Context())
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	if !d.Supported {
		writeJSON(w, http.StatusNotImplemented, map[string]string{"error": "the storage does not list ordering keys (storage.KeyInspector)"})
		return
	}
	out := map[string]any{}
	for _, t := range d.Tables {
		out[t.Kind] = keysJSON(t.Keys)
	}
	writeJSON(w, http.StatusOK, out)
}
