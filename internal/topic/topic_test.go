package topic

import (
	"strings"
	"testing"
)

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
	for _, ok := range []string{"order.paid", "order.*", "#", "a.#.b", "order-paid_v2",
		// CAP takes any string: what is neither white space nor control passes.
		"sample.rabbitmq.mysql:v1", "tenant/a.order", "订单.已支付", "a+b.c@d", "a$b.c=d",
		strings.Repeat("x", MaxLen), strings.Repeat("é", MaxLen/2)} {
		if err := Validate(ok); err != nil {
			t.Errorf("Validate(%q) = %v, want nil", ok, err)
		}
	}
	for _, c := range []struct{ bad, want string }{
		{"", "empty"},
		{".a", "empty word"},
		{"a.", "empty word"},
		{"a..b", "empty word"},
		{"ord*er", "wildcards"},
		{"a.#b", "wildcards"},
		{"a b", `topic "a b" has white space (' ' at byte 1)`},
		{"a\tb", "white space"},
		{"a.b\n", "white space"},
		{"a\u00a0b", "white space"},
		{"a\x00b", `topic "a\x00b" has a control character (U+0000 at byte 1)`},
		{"a\x7fb", "control character"},
		{"a\u0085b", "white space"},
		{"a\xffb", `topic "a\xffb" is not valid UTF-8`},
		{strings.Repeat("x", MaxLen+1), "is 256 bytes long: at most 255"},
		{strings.Repeat("é", MaxLen/2+1), "is 256 bytes long"},
	} {
		if err := Validate(c.bad); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Validate(%q) = %v, want an error saying %q", c.bad, err, c.want)
		}
	}
	if !HasWildcard("a.*") || !HasWildcard("#") || HasWildcard("a.b") {
		t.Error("HasWildcard wrong")
	}
}
