package alert

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gocap/gocap/internal/backoff"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
)

// Locales of [Config.Locale].
const (
	LocaleEnglish = "en"
	LocaleChinese = "zh"
)

// Defaults of [Config].
const (
	DefaultWindow       = 30 * time.Second
	DefaultMaxPerHour   = 30
	DefaultMaxExamples  = 5
	DefaultMaxTopics    = 10
	DefaultAttempts     = 4
	DefaultRetryWait    = time.Second
	DefaultPostTimeout  = 10 * time.Second
	DefaultFlushTimeout = 5 * time.Second
)

// maxRetryWait caps the wait between two attempts of one post.
const maxRetryWait = 30 * time.Second

// Config configures a [Notifier]. Only Sink is required.
type Config struct {
	// Sink delivers the summaries: DingTalk, WeCom, Feishu, Slack, Webhook,
	// or any Sink of your own.
	Sink Sink

	// Window is how long failures are gathered into one summary, from the
	// first failure after a quiet spell; it is also the least time between
	// two posts. Zero means DefaultWindow (30 s).
	Window time.Duration
	// Threshold is the least number of failures in one window that is
	// posted: a window with fewer is dropped (their messages are still
	// Failed on the dashboard). Zero or 1 posts every window with a failure.
	Threshold int
	// MaxPerHour caps the posts in any hour; failures past the cap are
	// gathered and posted, together, when the cap allows. Zero means
	// DefaultMaxPerHour (30). DingTalk robots take at most 20 messages a
	// minute.
	MaxPerHour int

	// Source names this application or instance in every summary's title.
	// DingTalk robots secured by keyword need the keyword in the message:
	// put it here.
	Source string
	// DashboardURL, if set, is the address of the gocap dashboard (its
	// prefix, such as "https://ops.example.com/gocap"); summaries link to
	// it, to the Failed messages of each topic, and to each example.
	DashboardURL string
	// Locale is the language of the summaries' labels: LocaleEnglish
	// (the default) or LocaleChinese.
	Locale string
	// Location is the time zone of the times shown. Nil means time.Local.
	Location *time.Location
	// MaxExamples is the number of failed messages a summary shows with
	// their id and error. Zero means DefaultMaxExamples (5); negative, none.
	MaxExamples int
	// MaxTopics is the number of topics a summary lists; the failures of
	// the others are counted together. Zero means DefaultMaxTopics (10).
	MaxTopics int

	// ReservedTopic is the topic this notifier's summaries are published
	// on, when they go through an outbox (for its retries and history)
	// rather than straight to the Sink: a message of that topic that
	// fails never makes a notification, so a notification that cannot be
	// delivered cannot notify about itself. Empty means none.
	ReservedTopic string

	// Attempts is the number of times one summary is posted before it is
	// given up (and logged; its failures are then carried into the next
	// summary). Zero means DefaultAttempts (4).
	Attempts int
	// RetryWait is the wait after the first failed post; it doubles after
	// each one, up to 30 s. Zero means DefaultRetryWait (1 s).
	RetryWait time.Duration
	// PostTimeout bounds each post. Zero means DefaultPostTimeout (10 s).
	PostTimeout time.Duration
	// FlushTimeout bounds the one post Run makes, when its context ends,
	// of failures not yet posted. Zero means DefaultFlushTimeout (5 s);
	// negative means no post at shutdown.
	FlushTimeout time.Duration

	// Logger receives the notifier's logs. Nil means slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	if c.Sink == nil {
		return c, errors.New("alert: Config.Sink is required")
	}
	if c.Window < 0 || c.RetryWait < 0 || c.PostTimeout < 0 {
		return c, fmt.Errorf("alert: Config.Window %v, RetryWait %v and PostTimeout %v must not be negative",
			c.Window, c.RetryWait, c.PostTimeout)
	}
	if c.Threshold < 0 || c.MaxPerHour < 0 || c.Attempts < 0 || c.MaxTopics < 0 {
		return c, fmt.Errorf("alert: Config.Threshold %d, MaxPerHour %d, Attempts %d and MaxTopics %d must not be negative",
			c.Threshold, c.MaxPerHour, c.Attempts, c.MaxTopics)
	}
	switch c.Locale {
	case "":
		c.Locale = LocaleEnglish
	case LocaleEnglish, LocaleChinese:
	default:
		return c, fmt.Errorf("alert: Config.Locale %q: want %q or %q", c.Locale, LocaleEnglish, LocaleChinese)
	}
	def := func(p *time.Duration, d time.Duration) {
		if *p == 0 {
			*p = d
		}
	}
	def(&c.Window, DefaultWindow)
	def(&c.RetryWait, DefaultRetryWait)
	def(&c.PostTimeout, DefaultPostTimeout)
	def(&c.FlushTimeout, DefaultFlushTimeout)
	defInt := func(p *int, d int) {
		if *p == 0 {
			*p = d
		}
	}
	defInt(&c.Threshold, 1)
	defInt(&c.MaxPerHour, DefaultMaxPerHour)
	defInt(&c.Attempts, DefaultAttempts)
	defInt(&c.MaxTopics, DefaultMaxTopics)
	defInt(&c.MaxExamples, DefaultMaxExamples)
	c.MaxExamples = max(c.MaxExamples, 0)
	if c.Location == nil {
		c.Location = time.Local
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// Stats are a [Notifier]'s counters since New.
type Stats struct {
	// Failures is the number of failed messages reported to OnFailed and
	// gathered; Ignored those of the reserved topic, not gathered.
	Failures, Ignored int64
	// BelowThreshold is the number of failures dropped in windows with
	// fewer than Config.Threshold.
	BelowThreshold int64
	// Posts is the number of summaries delivered; Undelivered those given
	// up after Config.Attempts (their failures carried into the next one).
	Posts, Undelivered int64
}

// Notifier gathers the messages that become Failed and posts one summary
// of them per window to a chat robot or webhook. Create it with [New], pass
// its OnFailed to outbox.Options.OnFailed, and run its Run. It is safe for
// concurrent use.
type Notifier struct {
	cfg  Config
	log  *slog.Logger
	wake chan struct{} // a failure started a window

	mu       sync.Mutex
	pending  aggregate
	stats    Stats
	running  bool
	lastPost time.Time
	posts    []time.Time // deliveries in the last hour, oldest first
}

// New returns a Notifier for cfg, with its zero fields defaulted.
func New(cfg Config) (*Notifier, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Notifier{cfg: c, log: c.Logger, wake: make(chan struct{}, 1)}, nil
}

// OnFailed gathers one failed message for the next summary; pass it as
// outbox.Options.OnFailed. It never waits for the network: it updates
// counters under a lock and returns, whatever the state of the Sink, and
// keeps a bounded amount of memory however many messages fail (counts per
// topic, and the first few examples). A message of Config.ReservedTopic
// is ignored.
func (n *Notifier) OnFailed(_ context.Context, f outbox.FailedMessage) {
	m := f.Message
	if m == nil {
		m = &storage.Message{}
	}
	if n.cfg.ReservedTopic != "" && m.Name == n.cfg.ReservedTopic {
		n.mu.Lock()
		n.stats.Ignored++
		n.mu.Unlock()
		return
	}
	now := time.Now()
	example := func() Example {
		text := m.LastError
		if f.Err != nil {
			text = f.Err.Error()
		}
		return Example{Kind: m.Kind.String(), ID: m.ID, MsgID: m.MsgID, Topic: m.Name, Group: m.Group,
			Attempts: f.Retries, Error: truncate(oneLine(text), maxErrorBytes), At: now}
	}
	n.mu.Lock()
	n.stats.Failures++
	n.pending.add(topicKey{kind: m.Kind, name: m.Name, group: m.Group}, now, example, n.cfg.MaxExamples)
	first := n.pending.fresh == 1
	n.mu.Unlock()
	if first {
		select {
		case n.wake <- struct{}{}:
		default:
		}
	}
}

// Stats returns the notifier's counters.
func (n *Notifier) Stats() Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stats
}

// Run posts the summaries until ctx ends: after the first failure of a
// quiet spell it waits Config.Window (and longer if the last post was less
// than a window ago, or MaxPerHour posts were made in the last hour), then
// posts one summary of every failure gathered meanwhile. A post that fails
// is retried Config.Attempts times in all, with a doubling wait, then
// logged; its failures are carried into the next summary, which only new
// failures start. When ctx ends, failures not yet posted are posted once,
// within Config.FlushTimeout. Run returns nil then, or an error if the
// notifier is already running.
func (n *Notifier) Run(ctx context.Context) error {
	n.mu.Lock()
	if n.running {
		n.mu.Unlock()
		return errors.New("alert: Run: the notifier is already running")
	}
	n.running = true
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		n.running = false
		n.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			n.flush(ctx)
			return nil
		case <-n.wake:
		}
		n.mu.Lock()
		start, fresh := n.pending.firstFresh, n.pending.fresh
		due := start.Add(n.cfg.Window)
		if !n.lastPost.IsZero() {
			due = later(due, n.lastPost.Add(n.cfg.Window))
		}
		due = later(due, n.hourFree(time.Now()))
		n.mu.Unlock()
		if fresh == 0 {
			continue // a wake left from failures already posted
		}
		if !backoff.Sleep(ctx, time.Until(due)) {
			n.flush(ctx)
			return nil
		}
		n.postPending(ctx, n.cfg.Attempts)
	}
}

// hourFree is when one more post keeps within MaxPerHour; n.mu is held.
func (n *Notifier) hourFree(now time.Time) time.Time {
	hourAgo := now.Add(-time.Hour)
	i := 0
	for i < len(n.posts) && !n.posts[i].After(hourAgo) {
		i++
	}
	n.posts = n.posts[i:]
	if len(n.posts) < n.cfg.MaxPerHour {
		return time.Time{}
	}
	return n.posts[len(n.posts)-n.cfg.MaxPerHour].Add(time.Hour)
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// take removes the pending failures; n.mu is held.
func (n *Notifier) take() *aggregate {
	a := n.pending
	n.pending = aggregate{}
	return &a
}

// postPending posts the pending failures, if they reach the threshold, in
// at most attempts tries; undelivered, they are put back, to be carried
// into the next summary.
func (n *Notifier) postPending(ctx context.Context, attempts int) {
	n.mu.Lock()
	a := n.take()
	if a.count == 0 {
		n.mu.Unlock()
		return
	}
	if a.count < n.cfg.Threshold {
		n.stats.BelowThreshold += int64(a.count)
		n.mu.Unlock()
		n.log.Debug("gocap alert: failures below the threshold, not posted", "failures", a.count,
			"threshold", n.cfg.Threshold)
		return
	}
	now := time.Now()
	n.lastPost = now
	n.posts = append(n.posts, now)
	s := a.summary(&n.cfg)
	n.mu.Unlock()

	err := n.deliver(ctx, s, attempts)
	n.mu.Lock()
	defer n.mu.Unlock()
	if err == nil {
		n.stats.Posts++
		return
	}
	n.stats.Undelivered++
	// Carry the failures into the next summary; only new failures start it.
	fresh, firstFresh := n.pending.fresh, n.pending.firstFresh
	n.pending.carry(a, n.cfg.MaxExamples)
	n.pending.fresh, n.pending.firstFresh = fresh, firstFresh
	n.log.Error("gocap alert: could not deliver the failure notification; its failures go into the next one",
		"failures", s.Count, "attempts", attempts, "error", err)
}

// deliver posts s in at most attempts tries, waiting RetryWait, doubling,
// between them; a Permanent error ends the tries.
func (n *Notifier) deliver(ctx context.Context, s Summary, attempts int) error {
	b := backoff.New(n.cfg.RetryWait, max(n.cfg.RetryWait, maxRetryWait))
	var err error
	for i := 1; i <= attempts; i++ {
		pctx, cancel := context.WithTimeout(ctx, n.cfg.PostTimeout)
		err = n.cfg.Sink.Post(pctx, s)
		cancel()
		if err == nil {
			return nil
		}
		if IsPermanent(err) || i == attempts || ctx.Err() != nil {
			break
		}
		wait := b.Next()
		n.log.Warn("gocap alert: posting the failure notification failed; retrying", "attempt", i,
			"retry_in", wait, "error", err)
		if !backoff.Sleep(ctx, wait) {
			break
		}
	}
	return err
}

// flush posts, once and within FlushTimeout, what failed since the last
// post, when ctx (Run's) has ended.
func (n *Notifier) flush(ctx context.Context) {
	if n.cfg.FlushTimeout < 0 {
		return
	}
	n.mu.Lock()
	fresh := n.pending.fresh
	capped := !n.hourFree(time.Now()).IsZero()
	n.mu.Unlock()
	if fresh == 0 || capped {
		return
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), n.cfg.FlushTimeout)
	defer cancel()
	n.postPending(fctx, 1)
}
