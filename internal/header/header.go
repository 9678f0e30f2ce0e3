// Package header turns binary broker header values (AMQP byte arrays,
// Kafka record header values) into the strings of transport.Message.Headers,
// visibly and reversibly.
package header

import (
	"bytes"
	"encoding/base64"
	"strings"
	"unicode/utf8"
)

// Base64Prefix starts a header value that [Text] encoded in base64.
const Base64Prefix = "base64:"

// Text returns b as a header value: b itself when it is valid UTF-8
// without NUL bytes, otherwise Base64Prefix followed by b in standard
// base64 (so that a binary value stays visible and can be decoded with
// [Decode], instead of becoming an invalid-UTF-8 string).
func Text(b []byte) string {
	if utf8.Valid(b) && bytes.IndexByte(b, 0) < 0 {
		return string(b)
	}
	return Base64Prefix + base64.StdEncoding.EncodeToString(b)
}

// Decode reverses [Text]: a value with Base64Prefix and valid base64 after
// it gives the decoded bytes, any other value its own bytes. (A text value
// that itself starts with Base64Prefix cannot be told from an encoded one.)
func Decode(v string) []byte {
	if rest, ok := strings.CutPrefix(v, Base64Prefix); ok {
		if b, err := base64.StdEncoding.DecodeString(rest); err == nil {
			return b
		}
	}
	return []byte(v)
}
