package outbox

import (
	"fmt"

	"github.com/gocap/gocap/storage"
)

// checkVersion reports an invalid Options.Version.
func (o Options) checkVersion() error {
	if err := storage.CheckVersion(o.Version); err != nil {
		return fmt.Errorf("outbox: Options.Version: %w", err)
	}
	return nil
}

// groupName is the consumer group stored and consumed for a
// subscription's group: GroupPrefix, the group, and "." + Version when the
// outbox has a version (CAP's group + "." + Version).
func (o Options) groupName(group string) string {
	name := o.GroupPrefix + group
	if o.Version != "" {
		name += "." + o.Version
	}
	return name
}
