package nats

import (
	"fmt"
	"testing"
)

func TestFilterSubjects(t *testing.T) {
	tr := &Transport{cfg: Config{SubjectPrefix: "p."}}
	for pattern, want := range map[string]string{
		"order.paid":   "[p.order.paid]",
		"order.*":      "[p.order.*]",
		"order.*.eu":   "[p.order.*.eu]",
		"order.#":      "[p.order p.order.>]",
		"order.*.#":    "[p.order.* p.order.*.>]",
		"order":        "[p.order]",
		"#":            "error",
		"*.paid":       "error",
		"order.#.eu":   "error",
		"order.>":      "error",
		"order..paid":  "error",
		"order.pa id":  "error",
		"":             "error",
		"order.paid.#": "[p.order.paid p.order.paid.>]",
	} {
		got, err := tr.filterSubjects(pattern)
		if s := fmt.Sprint(got); (err != nil) != (want == "error") || (err == nil && s != want) {
			t.Errorf("filterSubjects(%q) = %s, %v; want %s", pattern, s, err, want)
		}
	}
}

func TestStreamOf(t *testing.T) {
	tr := &Transport{}
	for topic, want := range map[string]string{"order.paid": "order", "order": "order", "order.#": "order", "a/b.c": "error"} {
		got, err := tr.streamOf(topic)
		if (err != nil) != (want == "error") || (err == nil && got != want) {
			t.Errorf("streamOf(%q) = %q, %v; want %s", topic, got, err, want)
		}
	}
	tr.cfg.StreamName = func(string) string { return "bad.name" }
	if _, err := tr.streamOf("order.paid"); err == nil {
		t.Error("a StreamName with a dot was accepted")
	}
}

func TestCovers(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"a.b", "a.b", true},
		{"a.*", "a.b", true},
		{"a.>", "a.b.c", true},
		{"a.>", "a", false},
		{"a.>", "a.*", true},
		{"a.>", "a.>", true},
		{"a.*", "a.>", false},
		{"a.*", "a.b.c", false},
		{"a.b", "a.*", false},
		{"a.*.c", "a.b.c", true},
		{"a", "a.b", false},
		{"*", "a", true},
	} {
		if got := covers(c.a, c.b); got != c.want {
			t.Errorf("covers(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

func TestMergeSubjects(t *testing.T) {
	for _, c := range []struct {
		have, want []string
		out        string
		changed    bool
	}{
		{[]string{"o.paid"}, []string{"o.paid"}, "[o.paid]", false},
		{[]string{"o.paid"}, []string{"o.shipped"}, "[o.paid o.shipped]", true},
		{[]string{"o.paid", "o.*"}, []string{"o", "o.>"}, "[o o.>]", true},
		{[]string{"o.>"}, []string{"o.paid"}, "[o.>]", false},
		{nil, []string{"o", "o.>"}, "[o o.>]", true},
	} {
		out, changed := mergeSubjects(c.have, c.want)
		if fmt.Sprint(out) != c.out || changed != c.changed {
			t.Errorf("mergeSubjects(%q, %q) = %q, %v; want %s, %v", c.have, c.want, out, changed, c.out, c.changed)
		}
	}
}

func TestConsumerName(t *testing.T) {
	if got, want := consumerName("billing.eu team", "p.order.>"), "gocap-billing_eu_team-p_order__"; got != want {
		t.Errorf("consumerName = %q, want %q", got, want)
	}
}
