package storage

import "fmt"

// MaxVersionBytes is the longest version a backend stores:
// DotNetCore.CAP's Version column is VARCHAR(20) (CAP.Options.cs:
// "Maximum length is 20 characters").
const MaxVersionBytes = 20

// CheckVersion returns an error naming what is wrong when v cannot be a
// version (Message.Version, ClaimRequest.Version): longer than
// MaxVersionBytes, or holding a character other than an ASCII letter, a
// digit, '.', '_' or '-'. The characters are those every broker accepts
// in a queue or consumer group name, which a version becomes part of. The
// empty version is valid: rows without a version.
func CheckVersion(v string) error {
	if len(v) > MaxVersionBytes {
		return fmt.Errorf("version %q is %d bytes long; at most %d are allowed", v, len(v), MaxVersionBytes)
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("version %q holds %q at byte %d; only ASCII letters, digits, '.', '_' and '-' are allowed", v, c, i)
		}
	}
	return nil
}
