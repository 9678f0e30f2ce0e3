package outbox_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/rabbitmq"
	"github.com/gocap/gocap/wire"
)

// Environment of the child process of testProcessorKilled.
const (
	hungEnvBackend  = "GOCAP_TEST_HUNG_BACKEND"
	hungEnvDSN      = "GOCAP_TEST_HUNG_DSN"
	hungEnvName     = "GOCAP_TEST_HUNG_NAME"
	hungEnvAMQP     = "GOCAP_TEST_HUNG_AMQP"
	hungEnvExchange = "GOCAP_TEST_HUNG_EXCHANGE"
	hungLease       = 3 * time.Second
)

func TestMain(m *testing.M) {
	if b := os.Getenv(hungEnvBackend); b != "" {
		var err error
		switch b {
		case postgresBackend.name:
			err = runHungProcessor(postgresBackend)
		case mysqlBackend.name:
			err = runHungProcessor(mysqlBackend)
		case postgresSQLBackend.name:
			err = runHungProcessor(postgresSQLBackend)
		default:
			err = fmt.Errorf("unknown backend %q", b)
		}
		fmt.Fprintln(os.Stderr, "hung processor:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// hangingSender announces each send on stdout and never finishes it, like
// a process that hangs or dies mid-flight.
type hangingSender struct{ transport.Transport }

func (hangingSender) Send(ctx context.Context, _ string, msg transport.Message) error {
	fmt.Printf("CLAIMED %s\n", msg.Headers[wire.MsgID])
	<-ctx.Done()
	return ctx.Err()
}

// runHungProcessor is the child: a processor on the parent's tables whose
// sends hang until the parent kills it.
func runHungProcessor[TTx any](be backend[TTx]) error {
	d, closeDB, err := be.attach(os.Getenv(hungEnvDSN), os.Getenv(hungEnvName))
	if err != nil {
		return err
	}
	defer closeDB()
	tr, err := rabbitmq.New(rabbitmq.Config{URL: os.Getenv(hungEnvAMQP), Exchange: os.Getenv(hungEnvExchange), Logger: quietLogger()})
	if err != nil {
		return err
	}
	ob, err := outbox.New(d, hangingSender{tr}, outbox.Options{Lease: hungLease, PollInterval: 20 * time.Millisecond, Logger: quietLogger()})
	if err != nil {
		return err
	}
	return ob.Run(context.Background())
}

func testProcessorKilled[TTx any](t *testing.T, be backend[TTx]) {
	url := testenv.AMQPURL(t)
	env := be.open(t)
	b := newBroker(t, url)
	ctx := context.Background()

	// Publish while no processor runs, then start the child: it claims the
	// message and hangs in the send.
	publisher := newOutbox(t, env.driver(t), b.transport(t, url), outbox.Options{})
	id, err := publisher.PublishWithoutTx(ctx, "order.paid", orderPaid{ID: 42})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		hungEnvBackend+"="+be.name, hungEnvDSN+"="+env.dsn, hungEnvName+"="+env.name,
		hungEnvAMQP+"="+url, hungEnvExchange+"="+b.exchange)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	claimed := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if s, ok := strings.CutPrefix(sc.Text(), "CLAIMED "); ok {
				claimed <- s
				return
			}
		}
	}()
	var claimedAt time.Time
	select {
	case got := <-claimed:
		claimedAt = time.Now()
		if got != strconv.FormatInt(id, 10) {
			t.Fatalf("child claimed %s, want %d", got, id)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("child processor did not claim the message")
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	// Another processor takes the message over once the dead one's lease ends.
	ob := newOutbox(t, env.driver(t), b.transport(t, url), outbox.Options{Lease: hungLease, PollInterval: 20 * time.Millisecond})
	run(t, ob)
	m := b.next(t, 30*time.Second)
	if got := fmt.Sprint(m.Headers[wire.MsgID]); got != strconv.FormatInt(id, 10) {
		t.Fatalf("got %s, want %d", got, id)
	}
	if waited := time.Since(claimedAt); waited < hungLease-500*time.Millisecond {
		t.Errorf("taken over after %v, before the lease of %v ended", waited, hungLease)
	}
	waitFor(t, 5*time.Second, "row Succeeded", func() bool {
		return getRow(t, ob.Store(), storage.Published, id).Status == storage.StatusSucceeded
	})
	b.none(t, 300*time.Millisecond)
}
