package nats

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/wire"
)

// Send publishes msg to the subject of topic and waits for JetStream's
// acknowledgement (see transport.Sender).
func (t *Transport) Send(ctx context.Context, topic string, msg transport.Message) error {
	return t.SendBatch(ctx, []transport.Outgoing{{Topic: topic, Message: msg}})[0]
}

// SendBatch publishes msgs, in order, without waiting for each
// acknowledgement, then waits for them all (see transport.BatchSender).
// Each message's error is its own: nil once the stream stored it (or had
// it already: a duplicate of its Nats-Msg-Id), a *RefusedError when the
// server or the transport refused it, an error wrapping
// transport.ErrUnavailable when the server could not be reached or did
// not answer in time.
func (t *Transport) SendBatch(ctx context.Context, msgs []transport.Outgoing) []error {
	errs := make([]error, len(msgs))
	if len(msgs) == 0 {
		return errs
	}
	pending := make([]jetstream.PubAckFuture, len(msgs))
	subjects := make([]string, len(msgs))
	for i, m := range msgs {
		subjects[i] = t.cfg.SubjectPrefix + m.Topic
		pending[i], errs[i] = t.publishAsync(ctx, m)
	}
	for i, f := range pending {
		if f == nil {
			continue
		}
		errs[i] = t.acked(ctx, f, subjects[i])
		if errors.Is(errs[i], jetstream.ErrNoStreamResponse) && !t.cfg.FixedStreams {
			// The subject left its stream since it was added (another
			// service replaced the stream's subjects, or deleted the
			// stream): add it again, and publish once more.
			errs[i] = t.resend(ctx, msgs[i])
		}
		errs[i] = t.sendError(subjects[i], errs[i])
	}
	return errs
}

// publishAsync checks m, makes its subject part of its stream and
// publishes it; it returns the acknowledgement's future, or the error of
// the publish (already as sendError makes it).
func (t *Transport) publishAsync(ctx context.Context, m transport.Outgoing) (jetstream.PubAckFuture, error) {
	subject := t.cfg.SubjectPrefix + m.Topic
	nm, opts, err := t.prepare(ctx, m)
	if err != nil {
		return nil, t.sendError(subject, err)
	}
	f, err := t.js.PublishMsgAsync(nm, append(opts, jetstream.WithStallWait(t.cfg.PublishTimeout))...)
	if err != nil {
		return nil, t.sendError(subject, err)
	}
	return f, nil
}

// resend makes m's subject part of its stream again, having forgotten
// what was known of it, and publishes m once more, waiting for the
// acknowledgement.
func (t *Transport) resend(ctx context.Context, m transport.Outgoing) error {
	if stream, err := t.streamOf(m.Topic); err == nil {
		t.streams.forget(stream)
	}
	nm, opts, err := t.prepare(ctx, m)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, t.cfg.PublishTimeout)
	defer cancel()
	_, err = t.js.PublishMsg(ctx, nm, append(opts, jetstream.WithRetryAttempts(0))...)
	return err
}

// prepare checks m and builds its NATS message, with Nats-Msg-Id = its
// cap-msg-id, after making its subject part of its stream.
func (t *Transport) prepare(ctx context.Context, m transport.Outgoing) (*natsgo.Msg, []jetstream.PublishOpt, error) {
	if t.isClosed() {
		return nil, nil, ErrClosed
	}
	if !t.nc.IsConnected() {
		return nil, nil, fmt.Errorf("not connected (%v): %w", t.nc.Status(), transport.ErrUnavailable)
	}
	subject, err := t.subjectOf(m.Topic)
	if err != nil {
		return nil, nil, refused(err)
	}
	stream, err := t.streamOf(m.Topic)
	if err != nil {
		return nil, nil, refused(err)
	}
	nm := natsgo.NewMsg(subject)
	nm.Data = m.Body
	for k, v := range m.Headers {
		if err := checkHeader(k, v); err != nil {
			return nil, nil, refused(err)
		}
		nm.Header[k] = []string{v}
	}
	if err := t.streams.ensure(ctx, stream, []string{subject}); err != nil {
		return nil, nil, err
	}
	var opts []jetstream.PublishOpt
	if id := m.Headers[wire.MsgID]; id != "" {
		opts = append(opts, jetstream.WithMsgID(id))
	}
	return nm, opts, nil
}

// checkHeader returns an error naming a header that NATS would not carry
// as it is: a name that is empty or has a colon, white space or a control
// character; a value with a line break or with white space at either end
// (nats.go trims those and turns line breaks into spaces).
func checkHeader(k, v string) error {
	if k == "" || strings.ContainsFunc(k, func(r rune) bool { return r == ':' || r <= ' ' || r == 0x7f }) {
		return fmt.Errorf("header name %q: NATS header names cannot be empty or contain ':', white space or control characters", k)
	}
	if strings.ContainsAny(v, "\r\n") {
		return fmt.Errorf("header %q: the value has a line break, which NATS headers cannot carry", k)
	}
	if strings.TrimSpace(v) != v {
		return fmt.Errorf("header %q: the value starts or ends with white space, which NATS headers do not keep", k)
	}
	return nil
}

// acked waits for f's acknowledgement, for at most the send's context.
func (t *Transport) acked(ctx context.Context, f jetstream.PubAckFuture, subject string) error {
	select {
	case <-f.Ok():
		return nil
	case err := <-f.Err():
		return err
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("no acknowledgement from JetStream before the send's deadline: %w: %w", transport.ErrUnavailable, ctx.Err())
		}
		return fmt.Errorf("waiting for JetStream's acknowledgement: %w", ctx.Err())
	}
}

// refused marks err as the refusal of the message itself.
func refused(err error) error { return &RefusedError{Err: err} }

// sendError returns the error of a send to subject: nil; a *RefusedError
// for the refusal of the message (no stream for the subject, the server's
// refusal, a payload too large); an error wrapping transport.ErrUnavailable
// when the server was not reached, did not answer, or answered that
// JetStream cannot take messages now (status 503 — JetStream not enabled,
// no leader, not enough resources — or 429, too many requests); otherwise
// err with the subject named, a failed attempt (among them a stream or
// account whose limits are reached: see notStoredNow).
func (t *Transport) sendError(subject string, err error) error {
	var re *RefusedError
	var apiErr *jetstream.APIError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &re):
		re.Subject = subject
		return re
	case errors.Is(err, ErrClosed):
		return fmt.Errorf("nats: send to %q: %w", subject, err)
	case errors.Is(err, transport.ErrUnavailable):
		return fmt.Errorf("nats: send to %q: %w", subject, err)
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, natsgo.ErrNoResponders):
		if !t.nc.IsConnected() {
			return fmt.Errorf("nats: send to %q: %w: %w", subject, transport.ErrUnavailable, err)
		}
		return &RefusedError{Subject: subject, Err: fmt.Errorf("no stream holds the subject: %w", err)}
	case errors.As(err, &apiErr) && notStoredNow(apiErr):
		return fmt.Errorf("nats: send to %q: JetStream did not store it now (a limit of its stream or account reached, or the stream's store failing): %w", subject, err)
	case errors.As(err, &apiErr) && (apiErr.Code == 503 || apiErr.Code == 429):
		return fmt.Errorf("nats: send to %q: %w: %w", subject, transport.ErrUnavailable, err)
	case errors.As(err, &apiErr), errors.Is(err, natsgo.ErrMaxPayload), errors.Is(err, natsgo.ErrBadSubject),
		errors.Is(err, natsgo.ErrBadHeaderMsg):
		return &RefusedError{Subject: subject, Err: err}
	case unreachable(err) || !t.nc.IsConnected():
		return fmt.Errorf("nats: send to %q: %w: %w", subject, transport.ErrUnavailable, err)
	}
	return fmt.Errorf("nats: send to %q: %w", subject, err)
}

// JetStream's error codes (nats-server's errors.json) of a publish that
// reached the stream and was not stored, for a reason that may pass.
const (
	// errCodeStoreFailed (JSStreamStoreFailedF, status 503): the stream
	// did not store the message: a limit of the stream reached with
	// Discard: New (MaxMsgs, MaxBytes, MaxMsgsPerSubject: "maximum
	// messages exceeded"), or its store failing.
	errCodeStoreFailed jetstream.ErrorCode = 10077
	// errCodeAccountResourcesExceeded (JSAccountResourcesExceededErr,
	// status 400): the account's JetStream limits are reached.
	errCodeAccountResourcesExceeded jetstream.ErrorCode = 10002
	// errCodeDuplicateInProcess (JSStreamDuplicateMessageConflict, status
	// 409): a message with the same Nats-Msg-Id is being stored.
	errCodeDuplicateInProcess jetstream.ErrorCode = 10158
)

// notStoredNow reports whether err is JetStream's answer that it did not
// store a message for a reason that may pass without anything changing in
// the message: a full stream (with Discard: New) or account, the stream's
// store failing, a duplicate being stored. Such a send reached the server,
// so it is a failed attempt, retried by the message's policy (the stream
// may drain); it is not transport.ErrUnavailable, which would pause every
// send for the sake of one stream and retry it for ever uncounted; and not
// a refusal of the message, which would fail it for good.
func notStoredNow(err *jetstream.APIError) bool {
	switch err.ErrorCode {
	case errCodeStoreFailed, errCodeAccountResourcesExceeded, errCodeDuplicateInProcess:
		return true
	}
	return false
}

// unreachable reports whether err means that the server was not reached
// or did not answer in time.
func unreachable(err error) bool {
	var netErr net.Error
	for _, e := range []error{
		natsgo.ErrConnectionClosed, natsgo.ErrDisconnected, natsgo.ErrConnectionReconnecting,
		natsgo.ErrReconnectBufExceeded, natsgo.ErrNoServers, natsgo.ErrTimeout, natsgo.ErrConnectionDraining,
		jetstream.ErrAsyncPublishTimeout, jetstream.ErrTooManyStalledMsgs, context.DeadlineExceeded, io.EOF,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	return errors.As(err, &netErr)
}
