package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/gocap/gocap/transport"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// SASL mechanisms of SASL.Mechanism.
const (
	// SASLPlain sends the user name and password in clear text: use it
	// with Config.TLS.
	SASLPlain = "PLAIN"
	// SASLScramSHA256 is SCRAM with SHA-256 (RFC 7677).
	SASLScramSHA256 = "SCRAM-SHA-256"
	// SASLScramSHA512 is SCRAM with SHA-512.
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// SASL is the SASL authentication of every connection to the brokers.
type SASL struct {
	// Mechanism is SASLPlain, SASLScramSHA256 or SASLScramSHA512.
	Mechanism string
	// User and Password are the credentials.
	User, Password string
}

// ErrAuthentication marks the brokers' refusal of the transport's
// credentials (a SASL authentication failure, a mechanism the brokers do
// not enable) or a failed TLS handshake: retrying does not fix it, the
// configuration must change. Send and Healthy return errors wrapping it,
// and Consume and ConsumeBatch return one (it wraps
// transport.ErrMisconfigured) at once instead of waiting.
var ErrAuthentication = fmt.Errorf("kafka: authentication with the brokers failed (%w)", transport.ErrMisconfigured)

// dialTimeout bounds a connection to a broker, TLS handshake and SASL
// exchange included.
const dialTimeout = 10 * time.Second

// mechanism checks cfg.SASL and returns its kafka-go mechanism, nil
// without SASL.
func mechanism(cfg Config) (sasl.Mechanism, error) {
	s := cfg.SASL
	if s == nil {
		return nil, nil
	}
	if s.User == "" {
		return nil, errors.New("kafka: Config.SASL.User is empty")
	}
	switch s.Mechanism {
	case SASLPlain:
		return plain.Mechanism{Username: s.User, Password: s.Password}, nil
	case SASLScramSHA256, SASLScramSHA512:
		algo := scram.SHA256
		if s.Mechanism == SASLScramSHA512 {
			algo = scram.SHA512
		}
		m, err := scram.Mechanism(algo, s.User, s.Password)
		if err != nil {
			return nil, fmt.Errorf("kafka: Config.SASL: %w", err)
		}
		return m, nil
	case "":
		return nil, fmt.Errorf("kafka: Config.SASL.Mechanism is empty: use %q, %q or %q", SASLPlain, SASLScramSHA256, SASLScramSHA512)
	default:
		return nil, fmt.Errorf("kafka: Config.SASL.Mechanism %q is unknown: use %q, %q or %q", s.Mechanism, SASLPlain, SASLScramSHA256, SASLScramSHA512)
	}
}

// connections are the ways the transport reaches the brokers, each with
// Config.TLS and Config.SASL: the writer's and the admin client's
// transport, and the readers' dialer.
type connections struct {
	transport *kafkago.Transport
	dialer    *kafkago.Dialer
}

func newConnections(cfg Config) (connections, error) {
	mech, err := mechanism(cfg)
	if err != nil {
		return connections{}, err
	}
	return connections{
		transport: &kafkago.Transport{TLS: cfg.TLS, SASL: mech, DialTimeout: dialTimeout},
		dialer:    &kafkago.Dialer{TLS: cfg.TLS, SASLMechanism: mech, Timeout: dialTimeout, DualStack: true},
	}, nil
}

// authFailed reports whether err is a refusal of the transport's
// credentials or a failed TLS handshake (see ErrAuthentication).
func authFailed(err error) bool {
	var (
		kerr      kafkago.Error
		verify    *tls.CertificateVerificationError
		record    tls.RecordHeaderError
		alert     tls.AlertError
		authority x509.UnknownAuthorityError
		host      x509.HostnameError
	)
	switch {
	case errors.As(err, &kerr):
		return kerr == kafkago.SASLAuthenticationFailed || kerr == kafkago.UnsupportedSASLMechanism || kerr == kafkago.IllegalSASLState
	case errors.As(err, &verify), errors.As(err, &record), errors.As(err, &alert),
		errors.As(err, &authority), errors.As(err, &host):
		return true
	}
	return false
}

// authError wraps err with ErrAuthentication, naming the mechanism and
// user or the TLS handshake, if it is an authentication failure, and
// returns it unchanged otherwise.
func (t *Transport) authError(err error) error {
	if err == nil || errors.Is(err, ErrAuthentication) || !authFailed(err) {
		return err
	}
	var kerr kafkago.Error
	if s := t.cfg.SASL; s != nil && errors.As(err, &kerr) {
		return fmt.Errorf("%w: SASL %s as user %q refused: %w", ErrAuthentication, s.Mechanism, s.User, err)
	}
	return fmt.Errorf("%w: TLS handshake: %w", ErrAuthentication, err)
}

// checkAuth connects to the brokers in turn, when Config.TLS or
// Config.SASL is set, until one connection succeeds, and returns an error
// wrapping ErrAuthentication if a broker refused the credentials or the
// TLS handshake failed. A broker that cannot be reached is no error: the
// reader retries until it can. It runs before a consumer starts, because
// kafka-go's reader retries a refused authentication for ever.
func (t *Transport) checkAuth(ctx context.Context) error {
	if t.cfg.TLS == nil && t.cfg.SASL == nil {
		return nil
	}
	for _, b := range t.cfg.Brokers {
		conn, err := t.conns.dialer.DialContext(ctx, "tcp", b)
		if err == nil {
			conn.Close()
			return nil
		}
		if authFailed(err) {
			return fmt.Errorf("kafka: connecting to %s: %w", b, t.authError(err))
		}
		if ctx.Err() != nil {
			return nil
		}
	}
	return nil
}

// diagnose returns, for a failure of the writer or the admin client, an
// error wrapping ErrAuthentication if the brokers refuse the credentials
// or the TLS handshake fails, and err otherwise. kafka-go's writer reports
// a refused SASL authentication as a connection closed by the broker
// (unexpected EOF), like a broker going down: with TLS or SASL configured,
// such a failure is checked with one more connection, which reports the
// SASL error.
func (t *Transport) diagnose(ctx context.Context, err error) error {
	if err == nil || authFailed(err) {
		return t.authError(err)
	}
	if !brokersDown(err) {
		return err
	}
	if aerr := t.checkAuth(ctx); aerr != nil {
		return aerr
	}
	return err
}
