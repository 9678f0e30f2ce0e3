package rabbitmq_test

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/rabbitmq"
	"github.com/gocap/gocap/wire"
)

// stallProxy forwards connections to RabbitMQ, and can stop reading what
// the client writes on the connections it has (as RabbitMQ stops reading
// from a publishing connection under a memory or disk alarm) and write
// frames of its own to the client.
type stallProxy struct {
	ln     net.Listener
	target string
	dialed atomic.Int32 // connections accepted

	mu    sync.Mutex
	conns []*stallConn
	wg    sync.WaitGroup
}

type stallConn struct {
	client, server net.Conn
	writing        sync.Mutex    // serializes writes to client
	stall          chan struct{} // closed to stop reading from client
	stuck          chan struct{} // closed once the client wrote after the stall
}

func newStallProxy(t *testing.T, target string) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.client.Close()
			c.server.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *stallProxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		p.dialed.Add(1)
		c := &stallConn{client: client, server: server, stall: make(chan struct{}), stuck: make(chan struct{})}
		p.mu.Lock()
		p.conns = append(p.conns, c)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() { // client → server, until the stall
			defer p.wg.Done()
			buf := make([]byte, 32<<10)
			for {
				select {
				case <-c.stall:
					c.client.Read(buf) // the client writes after the stall: not forwarded
					close(c.stuck)
					return // and nothing read any more
				default:
				}
				n, err := c.client.Read(buf)
				if err != nil {
					c.server.Close()
					return
				}
				c.server.Write(buf[:n])
			}
		}()
		go func() { // server → client
			defer p.wg.Done()
			buf := make([]byte, 32<<10)
			for {
				n, err := c.server.Read(buf)
				if err != nil {
					c.client.Close()
					return
				}
				c.writing.Lock()
				_, err = c.client.Write(buf[:n])
				c.writing.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
}

// stall stops reading from the clients of the connections open now, and
// returns a channel closed once each of them wrote after that.
func (p *stallProxy) stall() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	stuck := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range p.conns {
		close(c.stall)
		wg.Add(1)
		go func() { defer wg.Done(); <-c.stuck }()
	}
	go func() { wg.Wait(); close(stuck) }()
	return stuck
}

// inject writes an AMQP method frame of channel 0 (class 10, connection)
// to the clients of the connections open now.
func (p *stallProxy) inject(t *testing.T, method uint16, args []byte) {
	t.Helper()
	payload := append([]byte{0, 10, byte(method >> 8), byte(method)}, args...)
	frame := []byte{1, 0, 0}
	frame = binary.BigEndian.AppendUint32(frame, uint32(len(payload)))
	frame = append(append(frame, payload...), 0xCE)
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.writing.Lock()
		_, err := c.client.Write(frame)
		c.writing.Unlock()
		if err != nil {
			t.Fatalf("writing a frame to the client: %v", err)
		}
	}
}

// newStallTransport returns a transport on an exchange of its own, through
// a stallProxy, that counts unroutable messages as sent.
func newStallTransport(t *testing.T, cfg rabbitmq.Config) (*rabbitmq.Transport, *stallProxy) {
	t.Helper()
	raw := testenv.AMQPURL(t)
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Exchange = testenv.Name("gocap_rmq_stall")
	cfg.AcceptUnroutable = true
	cfg.Logger = quiet
	t.Cleanup(func() { // after the proxy's cleanup, which closes the sockets under it
		c, err := amqp.Dial(raw)
		if err != nil {
			return
		}
		defer c.Close()
		if ch, err := c.Channel(); err == nil {
			ch.ExchangeDelete(cfg.Exchange, false, false)
		}
	})
	var tr *rabbitmq.Transport
	t.Cleanup(func() {
		if tr != nil {
			tr.Close()
		}
	})
	p := newStallProxy(t, u.Host)
	u.Host = p.ln.Addr().String()
	cfg.URL = u.String()
	tr, err = rabbitmq.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tr, p
}

func msg(id string, body []byte) transport.Message {
	return transport.Message{Headers: map[string]string{wire.MsgID: id}, Body: body}
}

// send runs tr.Send with a context of timeout in a goroutine.
func send(tr *rabbitmq.Transport, timeout time.Duration, m transport.Message) <-chan error {
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		done <- tr.Send(ctx, "a.b", m)
	}()
	return done
}

func within(t *testing.T, what string, done <-chan error, d time.Duration) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("%s has not returned after %v", what, d)
		return nil
	}
}

// TestSendReturnsWhenTheBrokerStopsReading checks that a Send stuck writing
// to a broker that stopped reading, and a Send queued behind it, return by
// the end of the shorter context, as unavailable, and that the next Send
// connects again.
func TestSendReturnsWhenTheBrokerStopsReading(t *testing.T) {
	tr, px := newStallTransport(t, rabbitmq.Config{})
	if err := tr.Send(context.Background(), "a.b", msg("1", []byte("x"))); err != nil {
		t.Fatal(err)
	}
	stuck := px.stall()
	big := send(tr, 30*time.Second, msg("2", make([]byte, 32<<20))) // more than the socket buffers hold
	select {
	case <-stuck:
	case <-time.After(10 * time.Second):
		t.Fatal("the big Send wrote nothing after the stall")
	}
	start := time.Now()
	small := send(tr, time.Second, msg("3", []byte("x")))
	err := within(t, "a Send with a 1s context behind a stuck one", small, 4*time.Second)
	t.Logf("queued Send returned after %v: %v", time.Since(start).Round(time.Millisecond), err)
	if !errors.Is(err, transport.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("queued Send: %v, want ErrUnavailable and DeadlineExceeded", err)
	}
	err = within(t, "the stuck Send, its connection torn down", big, 3*time.Second)
	if !errors.Is(err, transport.ErrUnavailable) {
		t.Errorf("stuck Send: %v, want ErrUnavailable", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tr.Send(ctx, "a.b", msg("4", []byte("x"))); err != nil {
		t.Fatalf("Send on a new connection: %v", err)
	}
	if n := px.dialed.Load(); n != 2 {
		t.Errorf("%d connections, want 2: the stuck one and the new one", n)
	}
}

// TestCloseWhileTheBrokerStopsReading checks that Close returns while a Send
// is stuck writing to a broker that stopped reading, and that the Send
// then returns.
func TestCloseWhileTheBrokerStopsReading(t *testing.T) {
	tr, px := newStallTransport(t, rabbitmq.Config{})
	if err := tr.Send(context.Background(), "a.b", msg("1", []byte("x"))); err != nil {
		t.Fatal(err)
	}
	stuck := px.stall()
	big := send(tr, 30*time.Second, msg("2", make([]byte, 32<<20)))
	select {
	case <-stuck:
	case <-time.After(10 * time.Second):
		t.Fatal("the big Send wrote nothing after the stall")
	}
	closed := make(chan error, 1)
	start := time.Now()
	go func() { closed <- tr.Close() }()
	within(t, "Close", closed, 4*time.Second)
	t.Logf("Close returned after %v", time.Since(start).Round(time.Millisecond))
	if err := within(t, "the stuck Send after Close", big, 3*time.Second); err == nil {
		t.Error("the stuck Send returned nil")
	}
}

// TestSendWhileBlocked checks that Sends fail at once as unavailable while
// the broker blocks the connection (connection.blocked, as under a memory
// alarm), and succeed again once it unblocks it.
func TestSendWhileBlocked(t *testing.T) {
	tr, px := newStallTransport(t, rabbitmq.Config{})
	if err := tr.Send(context.Background(), "a.b", msg("1", []byte("x"))); err != nil {
		t.Fatal(err)
	}
	const reason = "low on memory"
	px.inject(t, 60, append([]byte{byte(len(reason))}, reason...)) // connection.blocked
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		start := time.Now()
		err = within(t, "Send", send(tr, 5*time.Second, msg("2", []byte("x"))), 10*time.Second)
		if errors.Is(err, transport.ErrUnavailable) {
			if d := time.Since(start); d > time.Second {
				t.Errorf("a Send on a blocked connection took %v", d)
			}
			break
		}
	}
	if !errors.Is(err, transport.ErrUnavailable) || !strings.Contains(err.Error(), reason) {
		t.Fatalf("Send on a blocked connection: %v, want ErrUnavailable naming %q", err, reason)
	}
	px.inject(t, 61, nil) // connection.unblocked
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if err = within(t, "Send", send(tr, 5*time.Second, msg("3", []byte("x"))), 10*time.Second); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("Send after connection.unblocked: %v", err)
	}
}

// permanent reports whether err says retrying cannot help, as the outbox
// reads it.
func permanent(err error) bool {
	var p interface{ Permanent() bool }
	return errors.As(err, &p) && p.Permanent()
}

// TestRefusedBeforePublishing checks that messages RabbitMQ cannot take
// fail with a permanent RefusedError naming what is wrong, without being
// sent: the connection stays up, and the messages sent with them arrive.
func TestRefusedBeforePublishing(t *testing.T) {
	tr, px := newStallTransport(t, rabbitmq.Config{MaxMessageSize: 1024})
	long := strings.Repeat("a", 256)
	for _, c := range []struct {
		name, topic string
		msg         transport.Message
		want        string
	}{
		{"topic", long, msg("1", nil), "the topic (routing key) is 256 bytes"},
		{"header name", "a.b", transport.Message{Headers: map[string]string{wire.MsgID: "2", long: "v"}}, "is 256 bytes"},
		{"message id", "a.b", msg(long, nil), "the message id (header cap-msg-id) is 256 bytes"},
		{"headers", "a.b", transport.Message{Headers: map[string]string{wire.MsgID: "4", "h": strings.Repeat("x", 200<<10)}}, "the headers take"},
		{"body", "a.b", msg("5", make([]byte, 1025)), "the body is 1025 bytes, more than Config.MaxMessageSize (1024)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			errs := tr.SendBatch(ctx, []transport.Outgoing{
				{Topic: "a.b", Message: msg("ok-1", []byte("x"))},
				{Topic: c.topic, Message: c.msg},
				{Topic: "a.b", Message: msg("ok-2", make([]byte, 1024))},
			})
			var re *rabbitmq.RefusedError
			if err := errs[1]; !errors.As(err, &re) || !permanent(err) || errors.Is(err, transport.ErrUnavailable) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Send: %v, want a permanent RefusedError saying %q", err, c.want)
			}
			if errs[0] != nil || errs[2] != nil {
				t.Errorf("the messages sent with it: %v, %v", errs[0], errs[2])
			}
		})
	}
	if n := px.dialed.Load(); n != 1 {
		t.Errorf("%d connections, want 1: a refused message must leave the connection alone", n)
	}
}

// TestBrokerRefusalIsNotUnavailable checks that a message the broker
// refuses with a channel exception (here a CC header that is not an
// array, which RabbitMQ 3 refuses with PRECONDITION_FAILED) counts as an
// attempt, with the broker's reason, rather than as unavailable for ever.
func TestBrokerRefusalIsNotUnavailable(t *testing.T) {
	tr, _ := newStallTransport(t, rabbitmq.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := tr.Send(ctx, "a.b", transport.Message{Headers: map[string]string{wire.MsgID: "1", "CC": "x"}, Body: []byte("x")})
	if err == nil {
		t.Skip("this broker accepts a CC header that is a string")
	}
	if errors.Is(err, transport.ErrUnavailable) || !strings.Contains(err.Error(), "PRECONDITION_FAILED") {
		t.Errorf("Send refused by the broker: %v, want an error with its reason, not ErrUnavailable", err)
	}
	if err := tr.Send(ctx, "a.b", msg("2", []byte("x"))); err != nil {
		t.Errorf("Send after the refusal: %v", err)
	}
}
