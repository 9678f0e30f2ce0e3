package topic

import "testing"

func TestMatch(t *testing.T) {
	cases := []struct {
		pattern, name string
		want          bool
	}{
		{"order.paid", "order.paid", true},
		{"order.paid", "order.shipped", false},
		{"order.*", "order.paid", true},
		{"order.*", "order", false},
		{"order.*", "order.paid.eu", false},
		{"*.paid", "order.paid", true},
		{"order.#", "order", true},
		{"order.#", "order.paid.eu", true},
		{"#", "anything.at.all", true},
		{"#", "", true},
		{"#.eu", "order.paid.eu", true},
		{"#.eu", "eu", true},
		{"#.eu", "order.paid.us", false},
		{"order.#.eu", "order.eu", true},
		{"order.#.eu", "order.paid.big.eu", true},
		{"order.#.#.eu", "order.paid.eu", true},
		{"*.*", "a.b", true},
		{"*.*", "a", false},
		{"a.*.#", "a", false},
		{"a.*.#", "a.b", true},
		{"a.*.#", "a.b.c.d", true},
	}
	for _, c := range cases {
		if got := Match(c.pattern, c.name); got != c.want {
			t.Errorf("Match(%q, %q) = %v, want %v", c.pattern, c.name, got, c.want)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, ok := range []string{"order.paid", "order.*", "#", "a.#.b", "order-paid_v2"} {
		if err := Validate(ok); err != nil {
			t.Errorf("Validate(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", ".a", "a.", "a..b", "ord*er", "a.#b"} {
		if err := Validate(bad); err == nil {
			t.Errorf("Validate(%q) = nil, want an error", bad)
		}
	}
	if !HasWildcard("a.*") || !HasWildcard("#") || HasWildcard("a.b") {
		t.Error("HasWildcard wrong")
	}
}
