// Command callbackcenter is a callback center built from gocap: a service
// that other applications hand HTTP callbacks to (payment results to
// merchants, events to partners), and that delivers each one with retries,
// keeps every attempt, tells people when one fails for good, and lets an
// operator send it again.
//
//	go run ./examples/callbackcenter -console-password secret
//
// starts it on 127.0.0.1:8090 with an embedded SQLite database
// (callbackcenter.db). Its API:
//
//	POST /tasks        {"url": "https://merchant.example/notify", "method": "POST",
//	                    "params": {"order": 42}, "retry_limit": 5, "expected": "SUCCESS",
//	                    "source_app": "pay", "target_app": "shop", "delay_seconds": 0}
//	                   → 201 {"id": "..."}; 400 {"error": "retry_limit: ..."} naming the bad field
//	GET  /tasks/{id}   → the task: status (Delayed, Scheduled, Succeeded, Failed),
//	                     retries, last error, and its attempts (time, duration, outcome)
//	/console/          the gocap dashboard behind HTTP basic auth (-console-user,
//	                   -console-password): find Failed tasks and requeue them
//
// A task is an outbox message on topic "callback.task", stored with
// webhook.To, webhook.Method and webhook.Expect and a retry policy of
// retry_limit attempts with the waits of -retry-schedule; the webhook
// transport delivers it (2xx and a body containing "expected" = delivered).
// A task that fails for good is posted, in a summary per -alert-window, to a
// DingTalk robot (-dingtalk-url, -dingtalk-secret) or any JSON endpoint
// (-alert-url).
//
// Tasks whose URL resolves to a loopback, private or link-local address are
// refused (Failed at once, "refused"), so tenants cannot reach inside your
// network; -allow-private lifts that (cloud metadata addresses stay refused).
// -db postgres or -db mysql stores the tasks in PostgreSQL
// (GOCAP_POSTGRES_URL) or MySQL/MariaDB (GOCAP_MYSQL_DSN) instead.
package main

import (
	"context"
	"crypto/subtle"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/gocap/gocap/alert"
	"github.com/gocap/gocap/dashboard"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/transport/webhook"
)

// consolePrefix is where the dashboard is mounted.
const consolePrefix = "/console"

// config is the service's configuration, from flags and environment.
type config struct {
	Addr            string
	DB              string // sqlite, postgres or mysql
	SQLitePath      string
	AllowPrivate    bool
	Schedule        []time.Duration
	ConsoleUser     string
	ConsolePassword string
	PublicURL       string // the service's address as people reach it, for links in alerts
	DingTalkURL     string
	DingTalkSecret  string
	AlertURL        string
	AlertWindow     time.Duration
	PollInterval    time.Duration
	Logger          *slog.Logger
}

func main() {
	cfg := config{Logger: slog.Default()}
	flag.StringVar(&cfg.Addr, "addr", "127.0.0.1:8090", "listen address")
	flag.StringVar(&cfg.DB, "db", "sqlite", "database: sqlite, postgres (GOCAP_POSTGRES_URL) or mysql (GOCAP_MYSQL_DSN)")
	flag.StringVar(&cfg.SQLitePath, "sqlite", "callbackcenter.db", "SQLite file, with -db sqlite")
	flag.BoolVar(&cfg.AllowPrivate, "allow-private", false, "allow callback URLs on loopback and private addresses (refused by default)")
	schedule := flag.String("retry-schedule", durations(outbox.NotifySchedule), "waits before the retries, comma-separated; the last one repeats")
	flag.StringVar(&cfg.ConsoleUser, "console-user", envOr("CALLBACK_CONSOLE_USER", "admin"), "console user (env CALLBACK_CONSOLE_USER)")
	flag.StringVar(&cfg.ConsolePassword, "console-password", os.Getenv("CALLBACK_CONSOLE_PASSWORD"), "console password (env CALLBACK_CONSOLE_PASSWORD); empty serves the console to loopback clients only")
	flag.StringVar(&cfg.PublicURL, "public-url", "", "the service's URL for links in alerts (default http://<addr>)")
	flag.StringVar(&cfg.DingTalkURL, "dingtalk-url", os.Getenv("CALLBACK_DINGTALK_URL"), "DingTalk robot webhook for failure alerts (env CALLBACK_DINGTALK_URL)")
	flag.StringVar(&cfg.DingTalkSecret, "dingtalk-secret", os.Getenv("CALLBACK_DINGTALK_SECRET"), "DingTalk robot signing secret, SEC… (env CALLBACK_DINGTALK_SECRET)")
	flag.StringVar(&cfg.AlertURL, "alert-url", os.Getenv("CALLBACK_ALERT_URL"), "any endpoint taking failure alerts as JSON (env CALLBACK_ALERT_URL)")
	flag.DurationVar(&cfg.AlertWindow, "alert-window", 30*time.Second, "failures gathered into one alert")
	flag.Parse()
	var err error
	if cfg.Schedule, err = parseDurations(*schedule); err != nil {
		log.Fatalf("-retry-schedule: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, nil); err != nil {
		log.Fatal(err)
	}
}

// run serves until ctx ends, then shuts down in order: the HTTP server
// (requests in flight finish), the outbox's processor (attempts in flight
// are recorded), the notifier (failures not yet posted are posted), the
// transport and the database. ready, if set, is called with the listening
// address once the service accepts requests.
func run(ctx context.Context, cfg config, ready func(addr net.Addr)) error {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	db, err := openDatabase(ctx, cfg.DB, cfg.SQLitePath, logger)
	if err != nil {
		return err
	}
	defer db.close()

	wh, err := webhook.New(webhook.Config{AllowPrivate: cfg.AllowPrivate, UserAgent: "gocap-callbackcenter"})
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	defer wh.Close()

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()
	publicURL := strings.TrimSuffix(cfg.PublicURL, "/")
	if publicURL == "" {
		publicURL = "http://" + ln.Addr().String()
	}

	notifier, err := newNotifier(cfg, publicURL+consolePrefix, logger)
	if err != nil {
		return err
	}
	opts := outbox.Options{Logger: logger, PollInterval: cfg.PollInterval}
	if notifier != nil {
		opts.OnFailed = notifier.OnFailed
	}
	ob, err := db.newOutbox(wh, opts)
	if err != nil {
		return err
	}

	mux := http.NewServeMux()
	(&api{ob: ob, schedule: cfg.Schedule, logger: logger}).register(mux)
	mux.Handle(consolePrefix+"/", console(ob, cfg, logger))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}

	// Every goroutine below is waited for before run returns.
	notifyCtx, stopNotifier := context.WithCancel(context.Background())
	defer stopNotifier()
	notifierDone := make(chan error, 1)
	if notifier != nil {
		go func() { notifierDone <- notifier.Run(notifyCtx) }()
	} else {
		notifierDone <- nil
	}
	runDone := make(chan error, 1)
	go func() { runDone <- ob.Run(context.Background()) }() // ended by ob.Close
	serveDone := make(chan error, 1)
	go func() { serveDone <- srv.Serve(ln) }()

	logger.Info("callback center running", "addr", ln.Addr().String(), "db", cfg.DB,
		"console", publicURL+consolePrefix+"/", "allow_private", cfg.AllowPrivate, "alerts", notifier != nil)
	if ready != nil {
		ready(ln.Addr())
	}

	var errs []error
	select {
	case <-ctx.Done():
	case err := <-serveDone:
		errs = append(errs, fmt.Errorf("http: %w", err))
		serveDone <- nil
	}
	logger.Info("callback center stopping")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		errs = append(errs, fmt.Errorf("http shutdown: %w", err))
	}
	if err := <-serveDone; err != nil && !errors.Is(err, http.ErrServerClosed) {
		errs = append(errs, fmt.Errorf("http: %w", err))
	}
	if err := ob.Close(); err != nil && !errors.Is(err, outbox.ErrClosed) {
		errs = append(errs, fmt.Errorf("outbox close: %w", err))
	}
	if err := <-runDone; err != nil && !errors.Is(err, outbox.ErrClosed) {
		errs = append(errs, fmt.Errorf("outbox: %w", err))
	}
	stopNotifier()
	if err := <-notifierDone; err != nil {
		errs = append(errs, fmt.Errorf("alert: %w", err))
	}
	logger.Info("callback center stopped")
	return errors.Join(errs...)
}

// newNotifier returns the failure notifier the configuration asks for, or
// nil for none.
func newNotifier(cfg config, dashboardURL string, logger *slog.Logger) (*alert.Notifier, error) {
	var sink alert.Sink
	switch {
	case cfg.DingTalkURL != "" && cfg.AlertURL != "":
		return nil, errors.New("alerts: set -dingtalk-url or -alert-url, not both")
	case cfg.DingTalkURL != "":
		sink = alert.DingTalk{URL: cfg.DingTalkURL, Secret: cfg.DingTalkSecret}
	case cfg.AlertURL != "":
		sink = alert.Webhook{URL: cfg.AlertURL}
	default:
		return nil, nil
	}
	n, err := alert.New(alert.Config{
		Sink:         sink,
		Window:       cfg.AlertWindow,
		DashboardURL: dashboardURL,
		Source:       "callbackcenter",
		Logger:       logger,
	})
	if err != nil {
		return nil, fmt.Errorf("alerts: %w", err)
	}
	return n, nil
}

// console returns the dashboard, behind HTTP basic auth when a password is
// configured (without one, the dashboard serves loopback clients only).
func console(ob processor, cfg config, logger *slog.Logger) http.Handler {
	opts := dashboard.Options{Prefix: consolePrefix, Logger: logger}
	if cfg.ConsolePassword == "" {
		logger.Warn("no -console-password: the console serves loopback clients only")
		return dashboard.New(ob, opts)
	}
	check := func(r *http.Request) (string, error) {
		user, pass, ok := r.BasicAuth()
		if !ok {
			return "", errors.New("no credentials")
		}
		userOK := subtle.ConstantTimeCompare([]byte(user), []byte(cfg.ConsoleUser)) == 1
		passOK := subtle.ConstantTimeCompare([]byte(pass), []byte(cfg.ConsolePassword)) == 1
		if !userOK || !passOK {
			return "", errors.New("wrong user or password")
		}
		return user, nil
	}
	opts.Authorize = check
	dash := dashboard.New(ob, opts)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Checked here too, so a browser gets the challenge that makes it
		// ask for the password; the dashboard checks again and logs the user.
		if _, err := check(r); err != nil {
			w.Header().Set("WWW-Authenticate", `Basic realm="callback center console", charset="UTF-8"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		dash.ServeHTTP(w, r)
	})
}

// parseDurations parses "15s,30s,3m".
func parseDurations(s string) ([]time.Duration, error) {
	var ds []time.Duration
	for _, f := range strings.Split(s, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("parse %q: %w", f, err)
		}
		if d <= 0 {
			return nil, fmt.Errorf("%v: want a positive wait", d)
		}
		ds = append(ds, d)
	}
	return ds, nil
}

// durations formats ds as parseDurations reads them.
func durations(ds []time.Duration) string {
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = d.String()
	}
	return strings.Join(s, ",")
}
