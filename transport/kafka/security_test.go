package kafka_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/kafka"
	"github.com/gocap/gocap/transport/transporttest"
	"github.com/gocap/gocap/wire"
)

// TestSecurityConfigChecked checks that New refuses SASL settings it can
// tell are wrong, naming the field.
func TestSecurityConfigChecked(t *testing.T) {
	for _, c := range []struct {
		sasl kafka.SASL
		want []string
	}{
		{kafka.SASL{Mechanism: "GSSAPI", User: "u", Password: "p"}, []string{"Config.SASL.Mechanism", "GSSAPI", "SCRAM-SHA-512"}},
		{kafka.SASL{User: "u", Password: "p"}, []string{"Config.SASL.Mechanism", "empty"}},
		{kafka.SASL{Mechanism: kafka.SASLScramSHA256, Password: "p"}, []string{"Config.SASL.User", "empty"}},
	} {
		_, err := kafka.New(kafka.Config{Brokers: []string{"127.0.0.1:9092"}, SASL: &c.sasl})
		if err == nil {
			t.Errorf("New accepted SASL %+v", c.sasl)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("SASL %+v: error %q does not mention %q", c.sasl, err, w)
			}
		}
	}
}

// secureCluster starts an in-process Kafka that accepts only the given
// SASL user, with TLS if serverTLS is not nil. No topic is created
// automatically by the broker: the transport creates them, through its
// authenticated admin connection.
func secureCluster(t *testing.T, mechanism, user, pass string, serverTLS *tls.Config) []string {
	t.Helper()
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser(mechanism, user, pass)}
	if serverTLS != nil {
		opts = append(opts, kfake.TLS(serverTLS))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// roundTrip sends a message through tr (creating the topic) and waits for
// it in a consumer.
func roundTrip(t *testing.T, tr *kafka.Transport) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tr.Healthy(ctx); err != nil {
		t.Fatalf("Healthy: %v", err)
	}
	var s sink
	transporttest.Consume(t, tr, "secure", []string{"order.paid"}, s.handler(nil))
	err := tr.Send(ctx, "order.paid", transport.Message{Headers: map[string]string{wire.MsgID: "1"}, Body: []byte("paid")})
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	got := s.wait(t, 1)
	if got[0].Headers[wire.MsgID] != "1" || string(got[0].Body) != "paid" {
		t.Errorf("delivery %+v", got[0])
	}
}

// TestSASL sends and receives with each mechanism, right credentials.
func TestSASL(t *testing.T) {
	for _, mech := range []string{kafka.SASLScramSHA256, kafka.SASLScramSHA512, kafka.SASLPlain} {
		t.Run(mech, func(t *testing.T) {
			brokers := secureCluster(t, mech, "gocap", "s3cret", nil)
			tr := newTransport(t, brokers, kafka.Config{
				AutoCreateTopics: true,
				SASL:             &kafka.SASL{Mechanism: mech, User: "gocap", Password: "s3cret"},
			})
			roundTrip(t, tr)
		})
	}
}

// TestSASLRefused checks that credentials the brokers refuse (a wrong
// password, an unknown user, a mechanism the user has not) make Send,
// Consume and Healthy fail at once with ErrAuthentication naming SASL,
// and that Consume does not wait or retry.
func TestSASLRefused(t *testing.T) {
	brokers := secureCluster(t, kafka.SASLScramSHA256, "gocap", "s3cret", nil)
	for name, s := range map[string]kafka.SASL{
		"wrong password":  {Mechanism: kafka.SASLScramSHA256, User: "gocap", Password: "wrong"},
		"unknown user":    {Mechanism: kafka.SASLScramSHA256, User: "nobody", Password: "s3cret"},
		"other mechanism": {Mechanism: kafka.SASLScramSHA512, User: "gocap", Password: "s3cret"},
	} {
		t.Run(name, func(t *testing.T) {
			tr := newTransport(t, brokers, kafka.Config{SASL: &s})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			check := func(what string, err error, took time.Duration) {
				t.Helper()
				if !errors.Is(err, kafka.ErrAuthentication) || !errors.Is(err, transport.ErrMisconfigured) || !strings.Contains(err.Error(), "SASL") {
					t.Errorf("%s: %v, want ErrAuthentication naming SASL", what, err)
				}
				if errors.Is(err, transport.ErrUnavailable) {
					t.Errorf("%s: %v wraps ErrUnavailable: it is no outage", what, err)
				}
				if ctx.Err() != nil {
					t.Errorf("%s returned only when the test's context ended", what)
				}
				t.Logf("%s failed after %v: %v", what, took.Round(time.Millisecond), err)
			}
			start := time.Now()
			err := tr.Send(ctx, "order.paid", transport.Message{Body: []byte("x")})
			check("Send", err, time.Since(start))
			start = time.Now()
			err = tr.Consume(ctx, "secure", []string{"order.paid"}, func(context.Context, transport.Delivery) error { return nil })
			check("Consume", err, time.Since(start))
			start = time.Now()
			check("Healthy", tr.Healthy(ctx), time.Since(start))
		})
	}
}

// TestTLS sends and receives over TLS with SASL PLAIN, trusting the
// broker's certificate; without trusting it, Consume and Send fail at once
// with ErrAuthentication.
func TestTLS(t *testing.T) {
	serverTLS, roots := selfSigned(t)
	brokers := secureCluster(t, kafka.SASLPlain, "gocap", "s3cret", serverTLS)
	creds := &kafka.SASL{Mechanism: kafka.SASLPlain, User: "gocap", Password: "s3cret"}
	tr := newTransport(t, brokers, kafka.Config{AutoCreateTopics: true, SASL: creds, TLS: &tls.Config{RootCAs: roots}})
	roundTrip(t, tr)

	untrusting := newTransport(t, brokers, kafka.Config{SASL: creds, TLS: &tls.Config{}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := untrusting.Consume(ctx, "secure", []string{"order.paid"}, func(context.Context, transport.Delivery) error { return nil })
	if !errors.Is(err, kafka.ErrAuthentication) || ctx.Err() != nil {
		t.Errorf("Consume without trusting the broker's certificate: %v, want ErrAuthentication at once", err)
	}
	err = untrusting.Send(ctx, "order.paid", transport.Message{Body: []byte("x")})
	if !errors.Is(err, kafka.ErrAuthentication) || ctx.Err() != nil {
		t.Errorf("Send without trusting the broker's certificate: %v, want ErrAuthentication at once", err)
	}
	t.Logf("untrusted certificate: %v", err)
}

// selfSigned returns a server TLS configuration with a self-signed
// certificate for 127.0.0.1, and a pool that trusts it.
func selfSigned(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "gocap test broker"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}}}, roots
}
