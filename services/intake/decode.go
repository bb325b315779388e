package intake

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
)

// readJSON reads the request body into v: application/json only, at most
// maxBytes, at most maxDepth levels of nesting, exactly one JSON value and
// no unknown fields.
func readJSON(c *gin.Context, maxBytes int64, maxDepth int, v any) error {
	if err := checkContentType(c); err != nil {
		return err
	}
	body, err := readBody(c, maxBytes)
	if err != nil {
		return err
	}
	return decodeJSON(body, maxDepth, v)
}

// checkContentType accepts JSON, and JSON merge patches (RFC 7396).
func checkContentType(c *gin.Context) error {
	if ct := c.GetHeader("Content-Type"); ct != "application/json" { // the usual one needs no parsing
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && mt != "application/merge-patch+json") {
			return unsupportedType()
		}
	}
	return nil
}

// readBody reads the request body, at most maxBytes of it.
func readBody(c *gin.Context, maxBytes int64) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, maxBytes))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, tooLarge(maxBytes)
	}
	if err != nil {
		return nil, badRequest("could not read the request body")
	}
	return body, nil
}

// decodeJSON is readJSON after the body has been read.
func decodeJSON(body []byte, maxDepth int, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return badRequest("request body is empty")
	}
	if !utf8.Valid(body) { // encoding/json would pass it on in a json.RawMessage
		return badRequest("malformed JSON: the body is not valid UTF-8 (RFC 8259)")
	}
	if err := checkDepth(body, maxDepth); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest("trailing data after the JSON value")
	}
	return nil
}

func decodeError(err error) error {
	var syntax *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	var timeErr *time.ParseError
	switch {
	case errors.As(err, &syntax):
		return badRequest(fmt.Sprintf("malformed JSON at byte %d: %v", syntax.Offset, err))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("malformed JSON: unexpected end of input")
	case errors.As(err, &typeErr):
		if typeErr.Field == "" {
			return invalid(fmt.Sprintf("the body must be a JSON object, not %s", typeErr.Value))
		}
		return invalid(fmt.Sprintf("field %q must not be %s", typeErr.Field, typeErr.Value))
	case errors.As(err, &timeErr):
		return invalid(fmt.Sprintf("%q is not an RFC 3339 time, such as 2026-01-02T15:04:05Z", timeErr.Value))
	case strings.HasPrefix(err.Error(), "Time.UnmarshalJSON"): // not a string
		return invalid("a time must be an RFC 3339 string, such as \"2026-01-02T15:04:05Z\"")
	case bytes.HasPrefix([]byte(err.Error()), []byte("json: unknown field")):
		return invalid(err.Error()[len("json: "):])
	default:
		return badRequest("malformed JSON: " + err.Error())
	}
}

// checkDepth refuses JSON nested deeper than max, before it is decoded. It
// only counts brackets outside strings; malformed input is left to the
// decoder.
func checkDepth(data []byte, max int) error {
	depth, inString, escaped := 0, false, false
	for _, b := range data {
		switch {
		case escaped:
			escaped = false
		case inString && b == '\\':
			escaped = true
		case b == '"':
			inString = !inString
		case inString:
		case b == '{' || b == '[':
			depth++
			if depth > max {
				return invalid(fmt.Sprintf("JSON is nested deeper than %d levels", max))
			}
		case b == '}' || b == ']':
			depth--
		}
	}
	return nil
}

// stringValues is a JSON object of strings, such as a job's metadata. A
// value of null is refused, where encoding/json reads it as "" into a
// map[string]string: the caller sent no string.
type stringValues map[string]string

func (m *stringValues) UnmarshalJSON(data []byte) error {
	if !bytes.Contains(data, []byte("null")) && json.Unmarshal(data, (*map[string]string)(m)) == nil {
		return nil // the usual case; otherwise the error is told below, naming the key
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	if raw == nil {
		*m = nil
		return nil
	}
	out := make(stringValues, len(raw))
	for k, v := range raw {
		var str string
		if v[0] != '"' || json.Unmarshal(v, &str) != nil {
			return &json.UnmarshalTypeError{Value: jsonKind(v[0]), Type: reflect.TypeFor[string](), Field: k}
		}
		out[k] = str
	}
	*m = out
	return nil
}

// jsonKind names the kind of JSON value that starts with b.
func jsonKind(b byte) string {
	switch b {
	case 'n':
		return "null"
	case 't', 'f':
		return "bool"
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	}
	return "number"
}
