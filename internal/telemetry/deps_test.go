package telemetry_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestAPIOnly checks that gocap's library packages depend on the
// OpenTelemetry API only: the SDK, exporters and Prometheus are for the
// application (and gocap's tests and examples) to choose.
func TestAPIOnly(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}",
		"github.com/gocap/gocap/outbox", "github.com/gocap/gocap/dashboard",
		"github.com/gocap/gocap/transport/...", "github.com/gocap/gocap/storage/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var otel int
	for _, p := range strings.Fields(string(out)) {
		switch {
		case strings.HasPrefix(p, "go.opentelemetry.io/otel/sdk"),
			strings.HasPrefix(p, "go.opentelemetry.io/otel/exporters"),
			strings.HasPrefix(p, "github.com/prometheus/"):
			t.Errorf("a library package depends on %s", p)
		case strings.HasPrefix(p, "go.opentelemetry.io/otel"):
			otel++
		}
	}
	if otel == 0 {
		t.Errorf("no OpenTelemetry API package among the dependencies: is the list right?")
	}
}
