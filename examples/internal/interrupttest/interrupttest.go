// Package interrupttest runs an example's main in a child process and
// interrupts it (SIGINT, as Ctrl-C does) midway, so that a test can check
// what the interrupted example left behind.
//
// The example's test binary is the child: its TestMain calls Main first,
// which runs the example's main instead of the tests when the parent asked
// for it. RequireNoSchema and RequireNoRabbitMQ check what the example
// should have removed.
package interrupttest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gocap/gocap/examples/internal/interrupt"
)

// childEnv, set to "1" in the child's environment, makes Main run the
// example's main.
const childEnv = "GOCAP_INTERRUPTTEST_CHILD"

// Main runs main and exits with status 0 when the process is a child
// started by Run; it returns otherwise. Call it first in TestMain.
func Main(main func()) {
	if os.Getenv(childEnv) != "1" {
		return
	}
	main()
	os.Exit(0)
}

// Result is what an interrupted child did.
type Result struct {
	// Output is the child's standard output and standard error, in the
	// order it wrote them.
	Output string
	// Interrupted reports whether the interrupt reached the child's run:
	// it was sent SIGINT and logged a line containing InterruptedLog
	// (false: it had ended before marker was seen, before the signal, or
	// before the signal reached its run).
	Interrupted bool
	// Err is the child's exit error (nil for status 0).
	Err error
}

// InterruptedLog is what an example logs when an interrupt ended its run
// ("interrupted (context canceled); ... are removed"): interrupt.Main's
// LogPrefix.
const InterruptedLog = interrupt.LogPrefix

// Interrupt runs the example as Run does until an interrupt reaches its
// run (Result.Interrupted), at most three times: the rest of a run after
// marker may be short, and on a loaded machine the example can finish
// before the signal lands. It fails the test if no try was interrupted.
func Interrupt(t testing.TB, marker string, env []string, args ...string) Result {
	t.Helper()
	var res Result
	for try := 1; try <= 3; try++ {
		res = Run(t, marker, env, args...)
		if res.Interrupted {
			return res
		}
		t.Logf("try %d: the example ended before the interrupt reached its run:\n%s", try, res.Output)
	}
	t.Fatalf("the example ended before the interrupt reached its run, three times")
	return res
}

// Run starts the test binary as a child running the example's main with
// args as its command line and env added to its environment, waits for a
// line of its output containing marker, sends it SIGINT, and waits for it
// to end. With marker empty it does not interrupt the child: it waits for
// it to end. Each wait is bounded: the marker within 60 s, the end within
// 60 s of the signal (or of the start), after which the child is killed
// and the test fails.
func Run(t testing.TB, marker string, env []string, args ...string) Result {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), childEnv+"=1"), env...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the example: %v", err)
	}
	exited := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		pw.Close()
		exited <- err
	}()

	var out bytes.Buffer
	seen := make(chan struct{})
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		found := false
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
			if !found && marker != "" && strings.Contains(sc.Text(), marker) {
				found = true
				close(seen)
			}
		}
		io.Copy(io.Discard, pr) // a line too long for the scanner: keep the child unblocked
	}()

	var res Result
	if marker != "" {
		select {
		case <-seen:
			res.Interrupted = cmd.Process.Signal(syscall.SIGINT) == nil
		case <-scanned:
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			<-exited
			<-scanned
			t.Fatalf("the example printed no line containing %q within 60 s:\n%s", marker, out.String())
		}
	}
	select {
	case res.Err = <-exited:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-exited
		<-scanned
		t.Fatalf("the example did not end within 60 s:\n%s", out.String())
	}
	<-scanned
	res.Output = out.String()
	res.Interrupted = res.Interrupted && strings.Contains(res.Output, InterruptedLog)
	var exit *exec.ExitError
	if errors.As(res.Err, &exit) && !exit.Exited() {
		// Killed by the signal itself: the example does not handle it.
		t.Logf("the example was killed by %v", exit.ProcessState)
	}
	return res
}

// RequireNoSchema fails the test if the PostgreSQL database at pgURL has a
// schema named name or, with name ending in "*", one whose name starts
// with what precedes the "*". It drops each one it finds, so that a later
// run does not meet it.
func RequireNoSchema(t testing.TB, pgURL, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	query := "SELECT nspname FROM pg_namespace WHERE nspname = $1"
	if prefix, ok := strings.CutSuffix(name, "*"); ok {
		query, name = "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)", prefix
	}
	rows, err := pool.Query(ctx, query, name)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		left = append(left, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, s := range left {
		t.Errorf("schema %s is left", s)
		pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+s+" CASCADE")
	}
}

// RequireNoRabbitMQ fails the test if the RabbitMQ broker at amqpURL has
// one of queues, or exchange. It deletes each one it finds, so that a
// later run does not meet it.
func RequireNoRabbitMQ(t testing.TB, amqpURL, exchange string, queues ...string) {
	t.Helper()
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A passive declare of a missing queue or exchange fails (404) and
	// closes its channel: one channel each.
	exists := func(declare func(*amqp.Channel) error) (*amqp.Channel, bool) {
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		return ch, declare(ch) == nil
	}
	for _, q := range queues {
		ch, ok := exists(func(ch *amqp.Channel) error {
			_, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
			return err
		})
		if ok {
			t.Errorf("queue %s is left", q)
			ch.QueueDelete(q, false, false, false)
		}
		ch.Close()
	}
	ch, ok := exists(func(ch *amqp.Channel) error {
		return ch.ExchangeDeclarePassive(exchange, "topic", true, false, false, false, nil)
	})
	if ok {
		t.Errorf("exchange %s is left", exchange)
		ch.ExchangeDelete(exchange, false, false)
	}
	ch.Close()
}
