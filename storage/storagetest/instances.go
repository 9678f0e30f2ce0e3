// The Instances area: Heartbeat, Instances and RemoveInstance.

package storagetest

import (
	"testing"
	"time"

	"github.com/gocap/gocap/storage"
)

func (s *suite[TTx]) instances(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	a := storage.Instance{ID: "host-a/1/1", Hostname: "host-a", PID: 1, Started: t0.Add(-time.Hour), LastSeen: t0}
	b := storage.Instance{ID: "host-b/2/2", Hostname: "host-b", PID: 2, Started: t0.Add(-time.Hour), LastSeen: t0.Add(-10 * time.Minute)}
	for _, inst := range []storage.Instance{a, b} {
		if err := d.Heartbeat(bg, inst); err != nil {
			t.Fatal(err)
		}
	}
	a.LastSeen = t0.Add(time.Second)
	if err := d.Heartbeat(bg, a); err != nil {
		t.Fatal(err)
	}
	got, err := d.Instances(bg, t0.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != a.ID || !got[0].LastSeen.Equal(a.LastSeen) || !got[0].Started.Equal(a.Started) || got[0].PID != 1 {
		t.Errorf("live instances: %+v", got)
	}
	if err := d.RemoveInstance(bg, "", t0.Add(-5*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got, _ := d.Instances(bg, time.Time{}); len(got) != 1 {
		t.Errorf("after removing stale ones: %d instances, want 1", len(got))
	}
	if err := d.RemoveInstance(bg, a.ID, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := d.Instances(bg, time.Time{}); len(got) != 0 {
		t.Errorf("after removing a: %d instances", len(got))
	}
}
