package webhook_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/sqlite"
	"github.com/gocap/gocap/transport/webhook"
)

// Deliver a message committed with the business data to a merchant's
// callback URL, signed, counted delivered only when the endpoint answers
// SUCCESS, and retried by the message's policy until it does.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

	// The merchant's endpoint: a Go receiver behind the verifying
	// middleware.
	received := make(chan string, 1)
	merchant := httptest.NewServer(webhook.Middleware([]string{secret}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		received <- r.Header.Get("cap-msg-name") + " " + string(body)
		io.WriteString(w, `{"code":"SUCCESS"}`)
	})))
	defer merchant.Close()

	dir, _ := os.MkdirTemp("", "gocap-example")
	defer os.RemoveAll(dir)
	db, err := sqlite.Open(ctx, filepath.Join(dir, "app.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	store := sqlite.New(db, sqlite.Options{})
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}

	wh, err := webhook.New(webhook.Config{
		Routes: []webhook.Route{{Topic: "merchant.#", Secret: secret}},
		// Only because this example's endpoint listens on 127.0.0.1:
		// loopback and private destinations are refused by default.
		AllowedNets: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer wh.Close()
	ob, err := outbox.New(store, wh, outbox.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	go ob.Run(ctx)

	var id int64
	err = outbox.InTx(ctx, db, ob, func(tx *sql.Tx) error {
		// ... the business change ...
		id, err = ob.Publish(ctx, tx, "merchant.notify", map[string]any{"order": 42, "status": "paid"},
			webhook.To(merchant.URL+"/notify"), webhook.Expect("SUCCESS"),
			outbox.WithRetry(outbox.RetryPolicy{Schedule: outbox.NotifySchedule, MaxAttempts: 16}))
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("the merchant received:", <-received)
	for {
		m, err := ob.Store().Get(ctx, storage.Published, id)
		if err == nil && m.Status == storage.StatusSucceeded {
			fmt.Println(m.Status, "after", len(m.Attempts), "attempt")
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Output:
	// the merchant received: merchant.notify {"order":42,"status":"paid"}
	// Succeeded after 1 attempt
}

// Verify a request on the receiving side: here the Standard Webhooks
// specification's own example, at its time.
func ExampleVerifier_Verify() {
	h := http.Header{}
	h.Set(webhook.HeaderID, "msg_p5jXN8AQM9LWM0D4loKWxJek")
	h.Set(webhook.HeaderTimestamp, "1614265330")
	h.Set(webhook.HeaderSignature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
	body := []byte(`{"test": 2432232314}`)

	v := webhook.Verifier{
		Secrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
		Now:     func() time.Time { return time.Unix(1614265330, 0) },
	}
	fmt.Println(v.Verify(h, body))
	fmt.Println(v.Verify(h, []byte(`{"test": 1}`)))
	h.Set(webhook.HeaderTimestamp, strconv.Itoa(1614265330-600))
	fmt.Println(v.Verify(h, body) != nil)
	// Output:
	// <nil>
	// webhook: no matching signature
	// true
}

// Protect a Go endpoint: requests whose signature or timestamp does not
// verify get 401 and never reach the handler. Two secrets verify during a
// key rotation.
func ExampleMiddleware() {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "SUCCESS")
	})
	http.Handle("/gocap/callback", webhook.Middleware([]string{os.Getenv("NEW_SECRET"), os.Getenv("OLD_SECRET")}, handler))
}
