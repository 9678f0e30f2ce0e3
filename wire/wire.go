// Package wire is DotNetCore.CAP's message format as gocap speaks it: the
// header names, the headers of a published message, the defaults given to
// a delivery from a publisher that set fewer of them, the forms of
// cap-senttime, and how a binary header value travels as text. The engine
// and every transport use it, so a CAP service and a gocap service read
// each other's messages, and a third-party transport can too.
//
// The headers are those of CAP's DotNetCore.CAP.Messages.Headers (see
// src/DotNetCore.CAP/Messages/Headers.cs in the CAP repository).
package wire

import (
	"encoding/base64"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Header names, identical to DotNetCore.CAP's.
const (
	// MsgID is the message id: a decimal int64 for gocap and CAP.
	MsgID = "cap-msg-id"
	// MsgName is the topic the message was published to.
	MsgName = "cap-msg-name"
	// Group is the consumer group a received message was stored for.
	Group = "cap-msg-group"
	// MsgType is the short name of the payload's type.
	MsgType = "cap-msg-type"
	// CorrelationID is the id of the message that started the
	// conversation; equal to the message id at publish.
	CorrelationID = "cap-corr-id"
	// CorrelationSeq is the position in the conversation; "0" at publish.
	CorrelationSeq = "cap-corr-seq"
	// SentTime is when the message was published, RFC 3339 in UTC; for a
	// delayed message, when it is due (as CAP sets it).
	SentTime = "cap-senttime"
	// DelayTime is the delay of a delayed message, in .NET's TimeSpan
	// format ([d.]hh:mm:ss[.fffffff]), as CAP's PublishDelayAsync writes it
	// (src/DotNetCore.CAP/Internal/ICapPublisher.Default.cs:
	// headers.Add(Headers.DelayTime, delayTime.Value.ToString())).
	DelayTime = "cap-delaytime"
	// CallbackName is the topic a subscriber publishes its reply to, as
	// CAP's publisher sets it from the callbackName argument of
	// PublishAsync (src/DotNetCore.CAP/Internal/ICapPublisher.Default.cs);
	// the reply carries CorrelationID = the message's id and
	// CorrelationSeq = its sequence + 1
	// (src/DotNetCore.CAP/Internal/ISubscribeExector.Default.cs).
	CallbackName = "cap-callback-name"
)

// Headers gocap adds to a received row that could not be stored as it
// arrived (see the outbox package's documentation of poison deliveries).
const (
	// UnstorableHeaders holds the delivery's original headers, each key
	// and value quoted as an ASCII Go string literal (strconv.QuoteToASCII;
	// strconv.Unquote gives the original back), a header a line.
	UnstorableHeaders = "gocap-unstorable-headers"
	// UnstorableBody says why the body was left out, when it was.
	UnstorableBody = "gocap-unstorable-body"
)

// OrderingKey carries a message's ordering key (outbox.WithOrderingKey):
// gocap's own header, which DotNetCore.CAP ignores. A receiving gocap
// stores the message with that key and handles the key's messages one at
// a time, in order, per consumer group.
const OrderingKey = "gocap-ordering-key"

// Published returns the headers of a message that gocap publishes: CAP's
// id, name, correlation and sent-time headers, the payload's type name
// unless typeName is empty, and extra. A header in extra replaces gocap's
// value, except MsgID and MsgName, which are always id and name.
func Published(id int64, name, typeName string, sent time.Time, extra map[string]string) map[string]string {
	sid := strconv.FormatInt(id, 10)
	h := make(map[string]string, 6+len(extra))
	h[CorrelationID] = sid
	h[CorrelationSeq] = "0"
	h[SentTime] = FormatSentTime(sent)
	if typeName != "" {
		h[MsgType] = typeName
	}
	maps.Copy(h, extra)
	h[MsgID] = sid
	h[MsgName] = name
	return h
}

// Delivery is a received message's identity, as its headers and the
// broker give it.
type Delivery struct {
	// MsgID is cap-msg-id, or the generated id when the publisher sent none.
	MsgID string
	// Name is cap-msg-name, or the broker topic when the publisher sent none.
	Name string
	// Headers are the delivery's headers with MsgID, Name and the group
	// set, in a map of their own.
	Headers map[string]string
	// GeneratedID reports that the publisher sent no cap-msg-id.
	GeneratedID bool
}

// Received reads the identity of a delivery of topic for group, giving a
// foreign message what it lacks as CAP does: an id from newID when it has
// no cap-msg-id, and the broker topic as its name when it has no
// cap-msg-name. headers is not modified.
func Received(group, topic string, headers map[string]string, newID func() string) Delivery {
	h := make(map[string]string, len(headers)+3)
	maps.Copy(h, headers)
	d := Delivery{MsgID: h[MsgID], Name: h[MsgName], Headers: h}
	if d.MsgID == "" {
		d.MsgID, d.GeneratedID = newID(), true
		h[MsgID] = d.MsgID
	}
	if d.Name == "" {
		d.Name = topic
		h[MsgName] = topic
	}
	h[Group] = group
	return d
}

// Delayed returns the headers of a delayed message: h (from [Published])
// with DelayTime set to delay and SentTime to due, as CAP's
// PublishDelayAsync sets them.
func Delayed(h map[string]string, delay time.Duration, due time.Time) map[string]string {
	h[DelayTime] = FormatDelay(delay)
	h[SentTime] = FormatSentTime(due)
	return h
}

// FormatDelay formats d as .NET's TimeSpan.ToString() does:
// [-][d.]hh:mm:ss[.fffffff], so "00:30:00" for 30 minutes and
// "1.02:03:04.5000000" for a day, 2 h, 3 min and 4.5 s.
func FormatDelay(d time.Duration) string {
	var b strings.Builder
	if d < 0 {
		b.WriteByte('-')
		d = -d
	}
	ticks := int64(d / 100) // .NET ticks are 100 ns
	const tps = 10_000_000
	days, rest := ticks/(86400*tps), ticks%(86400*tps)
	if days > 0 {
		b.WriteString(strconv.FormatInt(days, 10))
		b.WriteByte('.')
	}
	h, rest := rest/(3600*tps), rest%(3600*tps)
	m, rest := rest/(60*tps), rest%(60*tps)
	sec, frac := rest/tps, rest%tps
	fmt.Fprintf(&b, "%02d:%02d:%02d", h, m, sec)
	if frac > 0 {
		fmt.Fprintf(&b, ".%07d", frac)
	}
	return b.String()
}

// ParseDelay reads a DelayTime value in .NET's TimeSpan format, or as a Go
// duration ("30m"); ok is false if it is neither.
func ParseDelay(s string) (time.Duration, bool) {
	s = strings.TrimSpace(s)
	if d, err := time.ParseDuration(s); err == nil {
		return d, true
	}
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var days int64
	clock := s
	if i := strings.IndexByte(s, '.'); i >= 0 && i < strings.IndexByte(s, ':') {
		n, err := strconv.ParseInt(s[:i], 10, 64)
		if err != nil {
			return 0, false
		}
		days, clock = n, s[i+1:]
	}
	frac := ""
	if i := strings.IndexByte(clock, '.'); i >= 0 {
		clock, frac = clock[:i], clock[i+1:]
	}
	parts := strings.Split(clock, ":")
	if len(parts) != 3 {
		return 0, false
	}
	var hms [3]int64
	for i, p := range parts {
		n, err := strconv.ParseInt(p, 10, 64)
		if err != nil || n < 0 {
			return 0, false
		}
		hms[i] = n
	}
	d := time.Duration(days)*24*time.Hour + time.Duration(hms[0])*time.Hour +
		time.Duration(hms[1])*time.Minute + time.Duration(hms[2])*time.Second
	if frac != "" {
		if len(frac) > 7 {
			return 0, false
		}
		n, err := strconv.ParseInt(frac+strings.Repeat("0", 7-len(frac)), 10, 64)
		if err != nil {
			return 0, false
		}
		d += time.Duration(n) * 100
	}
	if neg {
		d = -d
	}
	return d, true
}

// sentTimeLayouts are the forms of cap-senttime accepted on receive:
// gocap's RFC 3339, and the invariant-culture forms DotNetCore.CAP writes
// for DateTime and DateTimeOffset.
var sentTimeLayouts = []string{
	time.RFC3339Nano,
	"01/02/2006 15:04:05 -07:00",
	"01/02/2006 15:04:05",
	"1/2/2006 3:04:05 PM -07:00",
	"1/2/2006 3:04:05 PM",
	"2006-01-02 15:04:05",
}

// FormatSentTime formats t as cap-senttime: RFC 3339 in UTC, which .NET's
// DateTime.Parse and DateTimeOffset.Parse read.
func FormatSentTime(t time.Time) string {
	return t.UTC().Format(time.RFC3339Nano)
}

// ParseSentTime reads a cap-senttime value in gocap's or CAP's forms; ok is
// false if none matches. Times without a zone are taken as UTC.
func ParseSentTime(s string) (t time.Time, ok bool) {
	s = strings.TrimSpace(s)
	for _, layout := range sentTimeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

// binaryPrefix starts a binary header value encoded by [HeaderValue].
const binaryPrefix = "base64:"

// HeaderValue turns a binary header value (an AMQP byte array, a Kafka
// record header) into the text gocap stores: the bytes themselves when
// they are valid UTF-8 without NUL, and otherwise "base64:" followed by
// their standard base64 encoding, visibly and reversibly (see
// [DecodeHeaderValue]).
func HeaderValue(b []byte) string {
	if utf8.Valid(b) && !strings.ContainsRune(string(b), 0) {
		return string(b)
	}
	return binaryPrefix + base64.StdEncoding.EncodeToString(b)
}

// DecodeHeaderValue returns the bytes a [HeaderValue] text stands for.
func DecodeHeaderValue(s string) []byte {
	if rest, ok := strings.CutPrefix(s, binaryPrefix); ok {
		if b, err := base64.StdEncoding.DecodeString(rest); err == nil {
			return b
		}
	}
	return []byte(s)
}
