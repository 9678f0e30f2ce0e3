package redisstreams

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/gocap/gocap/transport"
)

// The fields of a stream entry, as CAP names them (RedisMessage in
// src/DotNetCore.CAP.RedisStreams/TransportMessage.Redis.cs).
const (
	// HeadersField holds the message's headers as a JSON object of strings.
	HeadersField = "headers"
	// BodyField holds the message's body as a JSON string of its base64
	// encoding (System.Text.Json's form of a byte array).
	BodyField = "body"
)

// UnreadableHeadersHeader carries, on a delivery, the text of an entry's
// headers field that is not a JSON object: the delivery has no other
// headers, and nothing of the entry is dropped.
const UnreadableHeadersHeader = "gocap-redis-unreadable-headers"

// entryValues returns the fields of msg's entry, in CAP's order: headers,
// then body. A header value that is not valid UTF-8 is an error (JSON
// would replace its bytes and change the value silently; wire.HeaderValue
// makes binary values text).
func entryValues(msg transport.Message) ([]any, error) {
	headers := msg.Headers
	if headers == nil {
		headers = map[string]string{}
	}
	for k, v := range headers {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, fmt.Errorf("header %q is not valid UTF-8 (a JSON string cannot carry it; see wire.HeaderValue)", k)
		}
	}
	h, err := json.Marshal(headers)
	if err != nil {
		return nil, fmt.Errorf("encoding the headers: %w", err)
	}
	body := msg.Body
	if body == nil {
		body = []byte{}
	}
	b, err := json.Marshal(body) // a JSON string of the standard base64 encoding, as CAP writes it
	if err != nil {
		return nil, fmt.Errorf("encoding the body: %w", err)
	}
	return []any{HeadersField, string(h), BodyField, string(b)}, nil
}

// delivery converts a stream entry to a delivery of topic. It accepts
// CAP's entries and, so that nothing a foreign publisher wrote is lost or
// blocks the stream, others:
//
//   - headers: a JSON object; null values become "", other non-string
//     values their JSON text. A missing or empty field gives no headers; a
//     field that is not a JSON object gives one header,
//     UnreadableHeadersHeader, with its text.
//   - body: a JSON string of base64 (CAP's form) is decoded; any other
//     value is the body as it is (a plain payload); a missing field, when
//     the entry has fields besides headers, gives a body that is a JSON
//     object of those fields.
func delivery(topic string, values map[string]any) transport.Delivery {
	d := transport.Delivery{Topic: topic, Message: transport.Message{Headers: map[string]string{}}}
	if raw := fieldText(values[HeadersField]); raw != "" {
		d.Headers = decodeHeaders(raw)
	}
	raw, ok := values[BodyField]
	switch {
	case ok:
		d.Body = decodeBody(fieldText(raw))
	case len(values) > 1 || (len(values) == 1 && values[HeadersField] == nil):
		d.Body = otherFields(values)
	default:
		d.Body = []byte{}
	}
	return d
}

func decodeHeaders(raw string) map[string]string {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &fields); err != nil || fields == nil {
		return map[string]string{UnreadableHeadersHeader: raw}
	}
	headers := make(map[string]string, len(fields))
	for k, v := range fields {
		var s string
		switch {
		case string(v) == "null":
		case json.Unmarshal(v, &s) == nil:
		default:
			s = string(v)
		}
		headers[k] = s
	}
	return headers
}

func decodeBody(raw string) []byte {
	if strings.HasPrefix(raw, `"`) {
		var b []byte
		if err := json.Unmarshal([]byte(raw), &b); err == nil {
			if b == nil {
				b = []byte{}
			}
			return b
		}
	}
	return []byte(raw)
}

// otherFields returns the fields of an entry other than headers as a
// JSON object, with sorted names.
func otherFields(values map[string]any) []byte {
	names := make([]string, 0, len(values))
	for k := range values {
		if k != HeadersField {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		kj, _ := json.Marshal(k)
		vj, _ := json.Marshal(fieldText(values[k]))
		b.Write(kj)
		b.WriteByte(':')
		b.Write(vj)
	}
	b.WriteByte('}')
	return []byte(b.String())
}

// fieldText returns an entry field's value as go-redis hands it over (a
// string for RESP2 and RESP3 bulk strings) as text.
func fieldText(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case []byte:
		return string(x)
	default:
		return fmt.Sprint(x)
	}
}
