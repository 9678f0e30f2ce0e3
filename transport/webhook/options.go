package webhook

import (
	"strings"

	"github.com/gocap/gocap/outbox"
)

// Reserved message headers that carry a message's own destination. The
// publish options [To], [Method] and [Expect] set them, so the destination
// is stored with the row and every processor delivers the message the same
// way, after any restart or requeue. The transport reads them and does not
// forward them (nor any other header starting with [ReservedPrefix]) to
// the endpoint.
const (
	// HeaderURL is the message's destination URL (see [To]).
	HeaderURL = "gocap-webhook-url"
	// HeaderMethod is the message's HTTP method (see [Method]).
	HeaderMethod = "gocap-webhook-method"
	// HeaderExpect is the text the response body must contain (see
	// [Expect]).
	HeaderExpect = "gocap-webhook-expect"
	// ReservedPrefix starts every header the transport keeps to itself.
	ReservedPrefix = "gocap-webhook-"
)

// To sends the message to url instead of its route's URL. The settings of
// the route matching the message's topic (secret, headers, timeout, check)
// still apply; a message with To needs no route with a URL.
func To(url string) outbox.PublishOption { return outbox.WithHeader(HeaderURL, url) }

// Method sends the message with the HTTP method m (GET, POST, PUT, ...)
// instead of its route's. GET, HEAD and DELETE send no body: the top-level
// fields of the JSON object body become query parameters.
func Method(m string) outbox.PublishOption {
	return outbox.WithHeader(HeaderMethod, strings.ToUpper(m))
}

// Expect counts the message delivered only if the response body, besides
// a 2xx status, contains s (such as "SUCCESS", the reply payment and
// merchant callbacks conventionally expect). It replaces the route's
// Expect.
func Expect(s string) outbox.PublishOption { return outbox.WithHeader(HeaderExpect, s) }

func reserved(header string) bool {
	return len(header) >= len(ReservedPrefix) && strings.EqualFold(header[:len(ReservedPrefix)], ReservedPrefix)
}
