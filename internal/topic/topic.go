// Package topic matches topic names against AMQP-style topic patterns.
//
// Names and patterns are made of words separated by dots. In a pattern, "*"
// stands for exactly one word and "#" for zero or more words, as in
// RabbitMQ's topic exchanges.
package topic

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxLen is the longest topic name or pattern, in bytes, that Validate
// accepts: RabbitMQ's limit on a routing key, and within the 255
// characters of MySQL's name column, which would cut a longer name.
const MaxLen = 255

// Match reports whether name matches pattern.
func Match(pattern, name string) bool {
	if pattern == name {
		return true
	}
	return match(strings.Split(pattern, "."), strings.Split(name, "."))
}

func match(pat, words []string) bool {
	for len(pat) > 0 {
		switch pat[0] {
		case "#":
			// Collapse runs of '#'; then try every split point.
			rest := pat[1:]
			for len(rest) > 0 && rest[0] == "#" {
				rest = rest[1:]
			}
			if len(rest) == 0 {
				return true
			}
			for i := 0; i <= len(words); i++ {
				if match(rest, words[i:]) {
					return true
				}
			}
			return false
		case "*":
			if len(words) == 0 {
				return false
			}
		default:
			if len(words) == 0 || pat[0] != words[0] {
				return false
			}
		}
		pat, words = pat[1:], words[1:]
	}
	return len(words) == 0
}

// HasWildcard reports whether pattern contains a "*" or "#" word.
func HasWildcard(pattern string) bool {
	for _, w := range strings.Split(pattern, ".") {
		if w == "*" || w == "#" {
			return true
		}
	}
	return false
}

// Validate returns an error naming the problem if s is not a usable topic
// name or pattern: it must be non-empty, at most MaxLen bytes of valid
// UTF-8 without white space or control characters, without empty words,
// and use "*" and "#" only as whole words. Anything else goes: dashes,
// underscores, colons, slashes, letters of any script.
//
// It is for the names and patterns an application gives (to publish, to
// subscribe, in a configuration): a name a broker delivers is taken as it
// is, never checked with Validate.
func Validate(s string) error {
	if s == "" {
		return fmt.Errorf("topic is empty")
	}
	if len(s) > MaxLen {
		return fmt.Errorf("topic %q is %d bytes long: at most %d fit a routing key and the storage's name column", s, len(s), MaxLen)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("topic %q is not valid UTF-8", s)
	}
	for i, r := range s {
		switch {
		case unicode.IsSpace(r):
			return fmt.Errorf("topic %q has white space (%q at byte %d)", s, r, i)
		case unicode.IsControl(r):
			return fmt.Errorf("topic %q has a control character (%U at byte %d)", s, r, i)
		}
	}
	for _, w := range strings.Split(s, ".") {
		if w == "" {
			return fmt.Errorf("topic %q has an empty word (leading, trailing or double dot)", s)
		}
		if w != "*" && w != "#" && strings.ContainsAny(w, "*#") {
			return fmt.Errorf("topic %q: wildcards '*' and '#' must stand alone between dots", s)
		}
	}
	return nil
}
