package alert

import (
	"cmp"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gocap/gocap/storage"
)

// Summary is one notification: the messages that became Failed during a
// window (and any earlier ones whose notification could not be delivered).
// A [Sink] turns it into its service's message; [Summary.Title],
// [Summary.Text] and [Summary.Markdown] render it.
type Summary struct {
	// Source names the application or instance (Config.Source); may be empty.
	Source string `json:"source,omitempty"`
	// Count is the number of messages that became Failed.
	Count int `json:"count"`
	// First and Last are the times of the first and the last of them, in
	// Config.Location.
	First time.Time `json:"first"`
	Last  time.Time `json:"last"`
	// Topics are the topics with failures, most failures first, at most
	// Config.MaxTopics of them.
	Topics []TopicCount `json:"topics"`
	// OtherCount is the number of failures on topics not in Topics.
	OtherCount int `json:"other_count,omitempty"`
	// Examples are the first few failures, at most Config.MaxExamples.
	Examples []Example `json:"examples"`
	// DashboardURL is Config.DashboardURL.
	DashboardURL string `json:"dashboard_url,omitempty"`
	// Locale is Config.Locale: "en" or "zh".
	Locale string `json:"locale"`
}

// TopicCount is the number of failures on one topic (and consumer group,
// for received messages).
type TopicCount struct {
	// Kind is "published" or "received".
	Kind string `json:"kind"`
	// Topic is the message name.
	Topic string `json:"topic"`
	// Group is the consumer group of received messages; empty for published ones.
	Group string `json:"group,omitempty"`
	// Count is the number of failures.
	Count int `json:"count"`
}

// Example is one failed message.
type Example struct {
	// Kind is "published" or "received".
	Kind string `json:"kind"`
	// ID is the row id (the dashboard's), MsgID the id on the wire.
	ID    int64  `json:"id"`
	MsgID string `json:"msg_id"`
	// Topic and Group are the message's name and consumer group.
	Topic string `json:"topic"`
	Group string `json:"group,omitempty"`
	// Attempts is the number of failed attempts.
	Attempts int `json:"attempts"`
	// Error is the last attempt's error, on one line, cut to a few hundred bytes.
	Error string `json:"error"`
	// At is when it failed, in Config.Location.
	At time.Time `json:"at"`
}

// maxErrorBytes bounds an example's error text.
const maxErrorBytes = 300

// maxTopicKeys bounds the distinct topics one aggregate counts separately;
// failures on further topics are counted together.
const maxTopicKeys = 1000

type topicKey struct {
	kind        storage.Kind
	name, group string
}

// aggregate gathers failures until they are posted.
type aggregate struct {
	count, fresh int // fresh: failures added since the last take
	firstFresh   time.Time
	first, last  time.Time
	topics       map[topicKey]int
	other        int // failures on topics past maxTopicKeys
	examples     []Example
}

func (a *aggregate) add(k topicKey, at time.Time, ex func() Example, maxExamples int) {
	if a.count == 0 || at.Before(a.first) {
		a.first = at
	}
	if at.After(a.last) {
		a.last = at
	}
	if a.fresh == 0 {
		a.firstFresh = at
	}
	a.count++
	a.fresh++
	if a.topics == nil {
		a.topics = map[topicKey]int{}
	}
	if _, ok := a.topics[k]; ok || len(a.topics) < maxTopicKeys {
		a.topics[k]++
	} else {
		a.other++
	}
	if len(a.examples) < maxExamples {
		a.examples = append(a.examples, ex())
	}
}

// carry adds an earlier aggregate whose post failed to a (its failures are
// not fresh: they do not start a window of their own).
func (a *aggregate) carry(old *aggregate, maxExamples int) {
	if old == nil || old.count == 0 {
		return
	}
	if a.count == 0 || old.first.Before(a.first) {
		a.first = old.first
	}
	if old.last.After(a.last) {
		a.last = old.last
	}
	a.count += old.count
	a.other += old.other
	if a.topics == nil {
		a.topics = map[topicKey]int{}
	}
	for k, n := range old.topics {
		if _, ok := a.topics[k]; ok || len(a.topics) < maxTopicKeys {
			a.topics[k] += n
		} else {
			a.other += n
		}
	}
	a.examples = append(slices.Clone(old.examples), a.examples...)
	if len(a.examples) > maxExamples {
		a.examples = a.examples[:maxExamples]
	}
}

// summary makes the Summary of a.
func (a *aggregate) summary(c *Config) Summary {
	s := Summary{Source: c.Source, Count: a.count, First: a.first.In(c.Location), Last: a.last.In(c.Location),
		DashboardURL: c.DashboardURL, Locale: c.Locale, Examples: slices.Clone(a.examples)}
	for i := range s.Examples {
		s.Examples[i].At = s.Examples[i].At.In(c.Location)
	}
	for k, n := range a.topics {
		s.Topics = append(s.Topics, TopicCount{Kind: k.kind.String(), Topic: k.name, Group: k.group, Count: n})
	}
	slices.SortFunc(s.Topics, func(x, y TopicCount) int {
		return cmp.Or(cmp.Compare(y.Count, x.Count), cmp.Compare(x.Topic, y.Topic),
			cmp.Compare(x.Kind, y.Kind), cmp.Compare(x.Group, y.Group))
	})
	s.OtherCount = a.other
	if len(s.Topics) > c.MaxTopics {
		for _, t := range s.Topics[c.MaxTopics:] {
			s.OtherCount += t.Count
		}
		s.Topics = s.Topics[:c.MaxTopics]
	}
	return s
}

// labels are the words of a rendered summary in one language.
type labels struct {
	title      func(source string, n int) string
	failed     string
	period     string
	topics     string
	examples   string
	dashboard  string
	other      func(n int) string
	kind       map[string]string
	group      string
	attempts   func(n int) string
	timeLayout string
}

var english = labels{
	title: func(source string, n int) string {
		s := "gocap"
		if source != "" {
			s += " [" + source + "]"
		}
		if n == 1 {
			return s + ": 1 message failed"
		}
		return s + ": " + strconv.Itoa(n) + " messages failed"
	},
	failed:    "Failed",
	period:    "Period",
	topics:    "Topics",
	examples:  "Examples",
	dashboard: "Open the dashboard",
	other:     func(n int) string { return fmt.Sprintf("%d on other topics", n) },
	kind:      map[string]string{"published": "published", "received": "received"},
	group:     "group",
	attempts: func(n int) string {
		if n == 1 {
			return "1 attempt"
		}
		return strconv.Itoa(n) + " attempts"
	},
	timeLayout: "2006-01-02 15:04:05 MST",
}

var chinese = labels{
	title: func(source string, n int) string {
		s := "gocap"
		if source != "" {
			s += " [" + source + "]"
		}
		return s + ":" + strconv.Itoa(n) + " 条消息失败"
	},
	failed:     "失败条数",
	period:     "时间",
	topics:     "主题",
	examples:   "示例",
	dashboard:  "打开控制台",
	other:      func(n int) string { return fmt.Sprintf("其他主题 %d 条", n) },
	kind:       map[string]string{"published": "发布", "received": "接收"},
	group:      "分组",
	attempts:   func(n int) string { return "尝试 " + strconv.Itoa(n) + " 次" },
	timeLayout: "2006-01-02 15:04:05 MST",
}

func (s Summary) labels() labels {
	if s.Locale == LocaleChinese {
		return chinese
	}
	return english
}

// Title is the summary's one-line headline, such as
// "gocap [orders]: 100 messages failed".
func (s Summary) Title() string { return s.labels().title(s.Source, s.Count) }

// Text renders the summary as plain text: the title, then the count and
// period, the topics, the examples and the dashboard's address.
func (s Summary) Text() string { return s.render(plain) }

// Markdown renders the summary in the Markdown that DingTalk and WeCom
// robots show: a heading, bold labels, lists and links. In the source,
// topics, groups, message ids and errors, the characters Markdown or
// these robots' HTML could read as syntax are replaced by their fullwidth
// forms (［ for [, ＊ for *, ＜ for <, …), so that an error quoting an
// endpoint's answer cannot add links, images, emphasis or mentions.
func (s Summary) Markdown() string { return s.render(markdown) }

type style int

const (
	plain     style = iota
	plainBody       // plain, without the title and the dashboard's address
	markdown        // DingTalk, WeCom
	slack           // Slack mrkdwn
)

// render writes the summary in st. User content (source, topics, groups,
// ids, errors) is put on one line and escaped once: for Slack, &, < and >
// as it requires; for Markdown, neutralized by markdownNeutral.
func (s Summary) render(st style) string {
	l := s.labels()
	esc := func(t string) string { return oneLine(t) }
	switch st {
	case slack:
		esc = func(t string) string { return slackEscape(oneLine(t)) }
	case markdown:
		esc = func(t string) string { return markdownNeutral(oneLine(t)) }
	}
	label := func(t string) string {
		switch st {
		case markdown:
			return "**" + t + ":** "
		case slack:
			return "*" + t + ":* "
		}
		return t + ": "
	}
	// link's text is escaped already: built of esc'd content and labels.
	link := func(text, u string) string {
		switch st {
		case markdown:
			return "[" + text + "](" + u + ")"
		case slack:
			return "<" + u + "|" + text + ">"
		}
		return text + ": " + u
	}
	rich := st == markdown || st == slack
	var b strings.Builder
	para := func() { b.WriteString("\n\n") }
	switch st {
	case markdown:
		b.WriteString("### " + l.title(esc(s.Source), s.Count))
		para()
	case plain:
		b.WriteString(s.Title())
		para()
	}
	b.WriteString(label(l.failed) + strconv.Itoa(s.Count))
	para()
	first, last := s.First.Format(l.timeLayout), s.Last.Format(l.timeLayout)
	b.WriteString(label(l.period) + first)
	if last != first {
		b.WriteString(" – " + last)
	}
	if len(s.Topics) > 0 {
		para()
		b.WriteString(strings.TrimSpace(label(l.topics)))
		for _, t := range s.Topics {
			item := l.kind[t.Kind] + " " + esc(t.Topic)
			if t.Group != "" {
				item += " (" + l.group + " " + esc(t.Group) + ")"
			}
			item += ": " + strconv.Itoa(t.Count)
			if u := s.listURL(t); u != "" && rich {
				item = link(item, u)
			}
			b.WriteString("\n- " + item)
		}
		if s.OtherCount > 0 {
			b.WriteString("\n- " + l.other(s.OtherCount))
		}
	}
	if len(s.Examples) > 0 {
		para()
		b.WriteString(strings.TrimSpace(label(l.examples)))
		for _, e := range s.Examples {
			id := "#" + esc(e.MsgID)
			if u := s.messageURL(e); u != "" && rich {
				id = link(id, u)
			}
			item := l.kind[e.Kind] + " " + esc(e.Topic)
			if e.Group != "" {
				item += " (" + l.group + " " + esc(e.Group) + ")"
			}
			item += " " + id + ", " + l.attempts(e.Attempts) + ": " + esc(e.Error)
			b.WriteString("\n- " + item)
		}
	}
	if s.DashboardURL != "" && st != plainBody {
		para()
		b.WriteString(link(l.dashboard, s.DashboardURL))
	}
	return b.String()
}

// listURL is the dashboard's list of the Failed messages of t.
func (s Summary) listURL(t TopicCount) string {
	if s.DashboardURL == "" {
		return ""
	}
	q := url.Values{"status": {string(storage.StatusFailed)}, "name": {t.Topic}}
	if t.Group != "" {
		q.Set("group", t.Group)
	}
	return strings.TrimSuffix(s.DashboardURL, "/") + "/" + t.Kind + "?" + q.Encode()
}

// messageURL is the dashboard's page of e.
func (s Summary) messageURL(e Example) string {
	if s.DashboardURL == "" || e.ID == 0 {
		return ""
	}
	return strings.TrimSuffix(s.DashboardURL, "/") + "/" + e.Kind + "/" + strconv.FormatInt(e.ID, 10)
}

// oneLine replaces line breaks and tabs with spaces.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == '\t' {
			return ' '
		}
		return r
	}, s)
}

// markdownEscaper replaces each character that DingTalk's or WeCom's
// Markdown could read as syntax in the middle of a line (links and images
// [ ], emphasis * _ ~, code `, escapes \, HTML tags and WeCom's <@user>
// mentions < >) by its fullwidth form, which reads the same (and fits the
// CJK text these robots mostly show) and is syntax in no Markdown.
// Backslash escapes are not used: neither robot documents them, and where
// one shows "\[" literally, "\[text](url)" is still a link. Parentheses are kept: without brackets they make no link, and the
// dashboard URLs put in links are query-escaped. & is kept, so URLs in
// errors stay readable (an entity is text, never syntax). Line breaks are
// gone already (oneLine), so # > - and digits cannot start a heading,
// quote or list.
var markdownEscaper = strings.NewReplacer(
	`\`, "＼", "[", "［", "]", "］", "*", "＊", "_", "＿", "~", "～", "`", "｀", "<", "＜", ">", "＞")

// markdownNeutral makes s plain text in DingTalk's and WeCom's Markdown.
func markdownNeutral(s string) string { return markdownEscaper.Replace(s) }

var slackEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// slackEscape escapes the three characters Slack's mrkdwn reserves.
func slackEscape(s string) string { return slackEscaper.Replace(s) }

// truncate cuts s to at most n bytes on a rune boundary, marking the cut
// with an ellipsis.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const ell = "…"
	cut := max(n-len(ell), 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ell
}
