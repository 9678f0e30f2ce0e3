package header

import (
	"bytes"
	"testing"
)

func TestText(t *testing.T) {
	for _, c := range []struct {
		in   []byte
		want string
	}{
		{nil, ""},
		{[]byte("raw"), "raw"},
		{[]byte("naïve 東京"), "naïve 東京"},
		{[]byte{0xff, 0xfe, 'x'}, "base64://54"},
		{[]byte{'a', 0, 'b'}, "base64:YQBi"},
	} {
		got := Text(c.in)
		if got != c.want {
			t.Errorf("Text(%q) = %q, want %q", c.in, got, c.want)
		}
		if back := Decode(got); !bytes.Equal(back, c.in) {
			t.Errorf("Decode(%q) = %q, want %q", got, back, c.in)
		}
	}
}
