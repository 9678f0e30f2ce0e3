package alert

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Sink delivers one summary: a chat robot, a webhook, or anything else.
// Post is called by one goroutine at a time, with a deadline
// (Config.PostTimeout); an error makes the notifier try again later, up to
// Config.Attempts times, unless it wraps [Permanent].
type Sink interface {
	Post(ctx context.Context, s Summary) error
}

// SinkFunc makes a function a [Sink].
type SinkFunc func(ctx context.Context, s Summary) error

// Post calls f.
func (f SinkFunc) Post(ctx context.Context, s Summary) error { return f(ctx, s) }

type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as one that posting the same summary again cannot
// fix (a rejected request, a wrong address): the notifier does not retry
// it. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err wraps an error made by [Permanent].
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// defaultClient posts when a sink has no Client of its own.
var defaultClient = &http.Client{Timeout: 30 * time.Second}

// maxResponseBytes bounds the response body a sink reads.
const maxResponseBytes = 64 << 10

// postJSON posts body as JSON to target and returns the response body of a
// 2xx answer. Another status is an error, permanent for 4xx other than 408
// and 429. Errors name the host only: robot addresses carry their tokens.
func postJSON(ctx context.Context, c *http.Client, target string, body any, headers map[string]string) ([]byte, error) {
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		return nil, Permanent(errors.New("alert: the sink's URL is not an absolute URL"))
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(body); err != nil {
		return nil, Permanent(fmt.Errorf("alert: encoding the message: %w", err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, &buf)
	if err != nil {
		return nil, Permanent(fmt.Errorf("alert: POST to %s: %w", u.Host, errors.Unwrap(err)))
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	if c == nil {
		c = defaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its text holds the whole URL, token included
		}
		return nil, fmt.Errorf("alert: POST to %s: %w", u.Host, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return nil, fmt.Errorf("alert: POST to %s: reading the response: %w", u.Host, err)
	}
	if resp.StatusCode/100 != 2 {
		err := fmt.Errorf("alert: POST to %s: HTTP %d: %s", u.Host, resp.StatusCode, truncate(oneLine(string(data)), 200))
		if resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusRequestTimeout &&
			resp.StatusCode != http.StatusTooManyRequests {
			return nil, Permanent(err)
		}
		return nil, err
	}
	return data, nil
}

// checkErrcode reads the {"errcode": 0, "errmsg": "ok"} answer of DingTalk
// and WeCom robots, which report errors with HTTP 200.
func checkErrcode(service string, data []byte) error {
	var r struct {
		Errcode *int   `json:"errcode"`
		Errmsg  string `json:"errmsg"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return fmt.Errorf("alert: %s: unexpected answer %q: %w", service, truncate(string(data), 200), err)
	}
	if r.Errcode != nil && *r.Errcode != 0 {
		return fmt.Errorf("alert: %s: errcode %d: %s", service, *r.Errcode, r.Errmsg)
	}
	return nil
}

// DingTalk posts summaries to a DingTalk (钉钉) group's custom robot as
// markdown messages: {"msgtype": "markdown", "markdown": {"title", "text"}}.
// With Secret set (the robot's 加签 security setting, "SEC…"), the URL
// gets the timestamp (milliseconds) and sign query parameters: the
// base64 HMAC-SHA256 of timestamp+"\n"+Secret keyed by Secret. A robot
// secured by keywords needs one of them in the message: put it in
// Config.Source. See
// https://open.dingtalk.com/document/robots/custom-robot-access.
type DingTalk struct {
	// URL is the robot's webhook address,
	// https://oapi.dingtalk.com/robot/send?access_token=….
	URL string
	// Secret is the signing secret, if the robot has one.
	Secret string
	// Client posts; nil means a client with a 30 s timeout.
	Client *http.Client
}

// Post sends s as one markdown message.
func (d DingTalk) Post(ctx context.Context, s Summary) error {
	target, err := signDingTalk(d.URL, d.Secret, time.Now())
	if err != nil {
		return err
	}
	body := map[string]any{
		"msgtype":  "markdown",
		"markdown": map[string]string{"title": s.Title(), "text": truncate(s.Markdown(), 18000)},
	}
	data, err := postJSON(ctx, d.Client, target, body, nil)
	if err != nil {
		return err
	}
	return checkErrcode("DingTalk", data)
}

// DingTalkSign returns the sign parameter of a DingTalk robot request
// made at timestampMillis: the base64 HMAC-SHA256, keyed by secret, of
// the timestamp, a line feed and secret (before URL encoding).
func DingTalkSign(secret string, timestampMillis int64) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(strconv.FormatInt(timestampMillis, 10) + "\n" + secret))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

func signDingTalk(target, secret string, now time.Time) (string, error) {
	if secret == "" {
		return target, nil
	}
	u, err := url.Parse(target)
	if err != nil {
		return "", Permanent(errors.New("alert: DingTalk: the URL does not parse"))
	}
	ts := now.UnixMilli()
	q := u.Query()
	q.Set("timestamp", strconv.FormatInt(ts, 10))
	q.Set("sign", DingTalkSign(secret, ts))
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// WeCom posts summaries to a WeCom (企业微信) group robot as markdown
// messages: {"msgtype": "markdown", "markdown": {"content"}}, the content
// cut to the 4096 bytes the robot takes. See
// https://developer.work.weixin.qq.com/document/path/91770.
type WeCom struct {
	// URL is the robot's webhook address,
	// https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=….
	URL string
	// Client posts; nil means a client with a 30 s timeout.
	Client *http.Client
}

// Post sends s as one markdown message.
func (w WeCom) Post(ctx context.Context, s Summary) error {
	body := map[string]any{
		"msgtype":  "markdown",
		"markdown": map[string]string{"content": truncate(s.Markdown(), 4096)},
	}
	data, err := postJSON(ctx, w.Client, w.URL, body, nil)
	if err != nil {
		return err
	}
	return checkErrcode("WeCom", data)
}

// Feishu posts summaries to a Feishu (飞书) or Lark group's custom bot: a
// rich-text "post" message by default, {"msg_type": "post", "content":
// {"post": {"zh_cn"|"en_us": {"title", "content": [[{"tag": "text"…},
// {"tag": "a"…}]…]}}}}, or with PlainText a "text" message, {"msg_type":
// "text", "content": {"text"}}. With Secret set (签名校验), the body gets
// "timestamp" (seconds, as a string) and "sign": the base64 HMAC-SHA256 of
// an empty message keyed by timestamp+"\n"+Secret. See
// https://open.feishu.cn/document/client-docs/bot-v3/add-custom-bot.
type Feishu struct {
	// URL is the bot's webhook address,
	// https://open.feishu.cn/open-apis/bot/v2/hook/… (Lark:
	// https://open.larksuite.com/open-apis/bot/v2/hook/…).
	URL string
	// Secret is the signing secret, if the bot has one.
	Secret string
	// PlainText sends a text message instead of a rich-text post.
	PlainText bool
	// Client posts; nil means a client with a 30 s timeout.
	Client *http.Client
}

// FeishuSign returns the sign field of a Feishu bot request made at
// timestampSeconds: the base64 HMAC-SHA256 of an empty message, keyed by
// the timestamp, a line feed and secret.
func FeishuSign(secret string, timestampSeconds int64) string {
	mac := hmac.New(sha256.New, []byte(strconv.FormatInt(timestampSeconds, 10)+"\n"+secret))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// Post sends s as one post (or text) message.
func (f Feishu) Post(ctx context.Context, s Summary) error {
	body := map[string]any{}
	if f.PlainText {
		body["msg_type"] = "text"
		body["content"] = map[string]string{"text": truncate(s.Text(), 15000)}
	} else {
		body["msg_type"] = "post"
		lang := "en_us"
		if s.Locale == LocaleChinese {
			lang = "zh_cn"
		}
		body["content"] = map[string]any{"post": map[string]any{lang: feishuPost(s)}}
	}
	if f.Secret != "" {
		ts := time.Now().Unix()
		body["timestamp"] = strconv.FormatInt(ts, 10)
		body["sign"] = FeishuSign(f.Secret, ts)
	}
	data, err := postJSON(ctx, f.Client, f.URL, body, nil)
	if err != nil {
		return err
	}
	var r struct {
		Code       *int   `json:"code"`
		Msg        string `json:"msg"`
		StatusCode *int   `json:"StatusCode"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return fmt.Errorf("alert: Feishu: unexpected answer %q: %w", truncate(string(data), 200), err)
	}
	if r.Code != nil && *r.Code != 0 {
		return fmt.Errorf("alert: Feishu: code %d: %s", *r.Code, r.Msg)
	}
	if r.StatusCode != nil && *r.StatusCode != 0 {
		return fmt.Errorf("alert: Feishu: StatusCode %d: %s", *r.StatusCode, r.Msg)
	}
	return nil
}

// feishuPost is the rich-text body of s: its text, one paragraph a line,
// and a link to the dashboard.
func feishuPost(s Summary) map[string]any {
	lines := bytes.Split([]byte(s.render(plainBody)), []byte("\n"))
	var content [][]map[string]string
	for _, l := range lines {
		if len(l) == 0 {
			continue
		}
		content = append(content, []map[string]string{{"tag": "text", "text": string(l)}})
	}
	if s.DashboardURL != "" {
		content = append(content, []map[string]string{{"tag": "a", "text": s.labels().dashboard, "href": s.DashboardURL}})
	}
	return map[string]any{"title": s.Title(), "content": content}
}

// Slack posts summaries to a Slack incoming webhook: {"text": the title,
// shown in notifications, "blocks": [a header block with the title, a
// section block with the summary in mrkdwn]}. See
// https://api.slack.com/messaging/webhooks.
type Slack struct {
	// URL is the webhook address, https://hooks.slack.com/services/….
	URL string
	// Client posts; nil means a client with a 30 s timeout.
	Client *http.Client
}

// Post sends s as one message.
func (k Slack) Post(ctx context.Context, s Summary) error {
	title := s.Title()
	body := map[string]any{
		"text": slackEscape(title),
		"blocks": []any{
			map[string]any{"type": "header", "text": map[string]any{"type": "plain_text", "text": truncate(title, 150)}},
			map[string]any{"type": "section", "text": map[string]any{"type": "mrkdwn", "text": truncate(s.render(slack), 3000)}},
		},
	}
	_, err := postJSON(ctx, k.Client, k.URL, body, nil)
	return err
}

// Webhook posts summaries as JSON to any HTTP endpoint: the [Summary]'s
// fields (count, first, last, topics, other_count, examples,
// dashboard_url, locale, source) with "title", "text" (plain) and
// "markdown". Any 2xx answer is a success.
type Webhook struct {
	// URL is the endpoint.
	URL string
	// Headers are added to each request (an Authorization header, say).
	Headers map[string]string
	// Client posts; nil means a client with a 30 s timeout.
	Client *http.Client
}

// Post sends s as one JSON document.
func (w Webhook) Post(ctx context.Context, s Summary) error {
	body := struct {
		Title    string `json:"title"`
		Text     string `json:"text"`
		Markdown string `json:"markdown"`
		Summary
	}{s.Title(), s.Text(), s.Markdown(), s}
	_, err := postJSON(ctx, w.Client, w.URL, body, w.Headers)
	return err
}
