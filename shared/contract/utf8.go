package contract

import (
	"bytes"
	"unicode/utf8"
)

// ValidUTF8 returns data with bytes that are not UTF-8 replaced by U+FFFD
// (one for each run of them), as hookstream reads every message of the
// contract: JSON is UTF-8 (RFC 8259), and a payload, result or event data
// kept as raw JSON would otherwise reach records and webhook bodies as it
// came, which receivers reading JSON as text cannot parse. data itself is
// returned when it is valid, the usual case, without a copy.
func ValidUTF8(data []byte) []byte {
	if utf8.Valid(data) {
		return data
	}
	return bytes.ToValidUTF8(data, []byte("\uFFFD"))
}
