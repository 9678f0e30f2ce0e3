package storage

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"unicode/utf8"
)

// MaxMsgIDBytes is the longest message id (in bytes of UTF-8) a backend
// stores as it is. A longer id, or one that is not valid text, is stored as
// [StorableMsgID] makes it.
const MaxMsgIDBytes = 200

// truncatedMark ends a text that [TruncateText] cut.
const truncatedMark = "…[truncated]"

// ValidText returns s as valid UTF-8 without NUL characters, which SQL
// databases refuse in text columns. Each NUL becomes the visible escape
// `\x00`, and each byte that is not part of a valid UTF-8 sequence becomes
// `\xNN` (its value in hex). Text that is already valid is returned as it
// is, without copying.
func ValidText(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	const hexDigits = "0123456789abcdef"
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1, r == 0:
			c := s[i]
			b.WriteString(`\x`)
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&0xf])
			size = 1
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// TruncateText returns [ValidText](s) cut to at most maxBytes bytes on a
// character boundary. A text that had to be cut ends with "…[truncated]"
// (within maxBytes), so a reader sees that something is missing. A
// maxBytes too small for that mark cuts without it.
func TruncateText(s string, maxBytes int) string {
	s = ValidText(s)
	if maxBytes <= 0 {
		return ""
	}
	if len(s) <= maxBytes {
		return s
	}
	mark := truncatedMark
	if maxBytes < 4*len(mark) {
		mark = ""
	}
	cut := maxBytes - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// StorableMsgID returns the form of a message id that backends store and
// de-duplicate by: id itself when it is valid text (see [ValidText]) of at
// most MaxMsgIDBytes bytes, and otherwise "sha256:" followed by the hex
// SHA-256 of id (71 bytes). The hash is stable, so a redelivered copy of a
// message with such an id is still recognised as a duplicate.
func StorableMsgID(id string) string {
	if len(id) <= MaxMsgIDBytes && utf8.ValidString(id) && strings.IndexByte(id, 0) < 0 {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return "sha256:" + hex.EncodeToString(sum[:])
}
