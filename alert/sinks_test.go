package alert_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gocap/gocap/alert"
)

const okErrcode = `{"errcode":0,"errmsg":"ok"}`

// sample is a summary of 7 failures on two topics.
func sample(locale string) alert.Summary {
	at := time.Date(2026, 3, 1, 10, 0, 1, 0, time.UTC)
	return alert.Summary{
		Source: "orders-api", Count: 7, First: at, Last: at.Add(20 * time.Second),
		Topics: []alert.TopicCount{
			{Kind: "received", Topic: "order.paid", Group: "billing", Count: 5},
			{Kind: "published", Topic: "invoice.created", Count: 2},
		},
		Examples: []alert.Example{
			{Kind: "received", ID: 101, MsgID: "101", Topic: "order.paid", Group: "billing", Attempts: 50,
				Error: "billing: card <declined> & retried", At: at},
		},
		DashboardURL: "http://127.0.0.1:8080/gocap",
		Locale:       locale,
	}
}

// The DingTalk robot gets a markdown message on a signed URL whose sign
// is the HMAC the robot recomputes.
func TestDingTalkSignedMarkdown(t *testing.T) {
	r := newRobot(t, http.StatusOK, okErrcode)
	const secret = "SECtest0123456789"
	n := start(t, alert.Config{
		Sink:         alert.DingTalk{URL: r.URL + "/robot/send?access_token=tok123", Secret: secret},
		Window:       100 * time.Millisecond,
		DashboardURL: "http://127.0.0.1:8080/gocap",
		Source:       "orders-api",
	})
	for i := range 3 {
		n.OnFailed(context.Background(), failed(int64(100+i), "order.paid", "billing", "boom"))
	}
	waitFor(t, 5*time.Second, "the DingTalk post", func() bool { return r.count() == 1 })
	req := r.requests()[0]
	if req.Path != "/robot/send" || req.Query.Get("access_token") != "tok123" {
		t.Errorf("posted to %s?%v: the robot's address and token must be kept", req.Path, req.Query)
	}
	ts, err := strconv.ParseInt(req.Query.Get("timestamp"), 10, 64)
	if err != nil || time.Since(time.UnixMilli(ts)).Abs() > time.Minute {
		t.Fatalf("timestamp %q: want the current time in milliseconds", req.Query.Get("timestamp"))
	}
	// What DingTalk computes: HmacSHA256(key=secret, timestamp+"\n"+secret), base64.
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(req.Query.Get("timestamp") + "\n" + secret))
	if want := base64.StdEncoding.EncodeToString(mac.Sum(nil)); req.Query.Get("sign") != want {
		t.Errorf("sign %q, want %q", req.Query.Get("sign"), want)
	}
	if got := alert.DingTalkSign(secret, ts); got != req.Query.Get("sign") {
		t.Errorf("DingTalkSign = %q, the request has %q", got, req.Query.Get("sign"))
	}
	body := req.JSON(t)
	if str(t, body, "msgtype") != "markdown" {
		t.Errorf("msgtype %q, want markdown", body["msgtype"])
	}
	if title := str(t, body, "markdown", "title"); title != "gocap [orders-api]: 3 messages failed" {
		t.Errorf("title %q", title)
	}
	text := str(t, body, "markdown", "text")
	for _, want := range []string{"### gocap [orders-api]: 3 messages failed", "**Failed:** 3",
		"[received order.paid (group billing): 3](http://127.0.0.1:8080/gocap/received?group=billing&name=order.paid&status=Failed)",
		"[#100](http://127.0.0.1:8080/gocap/received/100)", "3 attempts: boom",
		"[Open the dashboard](http://127.0.0.1:8080/gocap)"} {
		if !strings.Contains(text, want) {
			t.Errorf("the text lacks %q:\n%s", want, text)
		}
	}
	waitFor(t, 5*time.Second, "Stats().Posts", func() bool { return n.Stats().Posts == 1 })
	if s := n.Stats(); s.Failures != 3 {
		t.Errorf("stats %+v", s)
	}
}

// A DingTalk or WeCom robot reports errors with HTTP 200 and an errcode.
func TestRobotErrcode(t *testing.T) {
	r := newRobot(t, http.StatusOK, `{"errcode":310000,"errmsg":"sign not match"}`)
	err := alert.DingTalk{URL: r.URL + "/robot/send?access_token=secret-token", Secret: "x"}.Post(context.Background(), sample("en"))
	if err == nil || !strings.Contains(err.Error(), "310000") {
		t.Errorf("DingTalk errcode 310000: err = %v", err)
	}
	err = alert.WeCom{URL: r.URL + "/cgi-bin/webhook/send?key=secret-token"}.Post(context.Background(), sample("en"))
	if err == nil || !strings.Contains(err.Error(), "310000") {
		t.Errorf("WeCom errcode: err = %v", err)
	}
}

// WeCom gets {"msgtype":"markdown","markdown":{"content"}}, cut to 4096 bytes.
func TestWeComMarkdown(t *testing.T) {
	r := newRobot(t, http.StatusOK, okErrcode)
	w := alert.WeCom{URL: r.URL + "/cgi-bin/webhook/send?key=k1"}
	s := sample(alert.LocaleChinese)
	if err := w.Post(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	s.Examples[0].Error = strings.Repeat("错误", 3000)
	if err := w.Post(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	reqs := r.requests()
	if len(reqs) != 2 || reqs[0].Query.Get("key") != "k1" {
		t.Fatalf("requests %+v", reqs)
	}
	body := reqs[0].JSON(t)
	if str(t, body, "msgtype") != "markdown" {
		t.Errorf("msgtype %v", body["msgtype"])
	}
	content := str(t, body, "markdown", "content")
	for _, want := range []string{"### gocap [orders-api]:7 条消息失败", "**失败条数:** 7", "接收 order.paid (分组 billing): 5",
		"发布 invoice.created: 2", "尝试 50 次", "[打开控制台](http://127.0.0.1:8080/gocap)"} {
		if !strings.Contains(content, want) {
			t.Errorf("the content lacks %q:\n%s", want, content)
		}
	}
	if long := str(t, reqs[1].JSON(t), "markdown", "content"); len(long) > 4096 || !strings.HasSuffix(long, "…") {
		t.Errorf("a long content is %d bytes, want at most 4096, cut with …", len(long))
	}
}

// Feishu gets a rich-text post (or a text message) with timestamp and
// sign in the body: the base64 HMAC-SHA256 of an empty message keyed by
// timestamp+"\n"+secret.
func TestFeishuSigned(t *testing.T) {
	r := newRobot(t, http.StatusOK, `{"code":0,"msg":"success","data":{}}`)
	const secret = "feishu-secret"
	f := alert.Feishu{URL: r.URL + "/open-apis/bot/v2/hook/abc", Secret: secret}
	if err := f.Post(context.Background(), sample(alert.LocaleChinese)); err != nil {
		t.Fatal(err)
	}
	f.PlainText = true
	if err := f.Post(context.Background(), sample(alert.LocaleEnglish)); err != nil {
		t.Fatal(err)
	}
	reqs := r.requests()
	post := reqs[0].JSON(t)
	ts := str(t, post, "timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(sec, 0)).Abs() > time.Minute {
		t.Fatalf("timestamp %q: want the current time in seconds", ts)
	}
	mac := hmac.New(sha256.New, []byte(ts+"\n"+secret))
	if want := base64.StdEncoding.EncodeToString(mac.Sum(nil)); str(t, post, "sign") != want {
		t.Errorf("sign %q, want %q", post["sign"], want)
	}
	if str(t, post, "msg_type") != "post" {
		t.Errorf("msg_type %v", post["msg_type"])
	}
	zh := post["content"].(map[string]any)["post"].(map[string]any)["zh_cn"].(map[string]any)
	if zh["title"] != "gocap [orders-api]:7 条消息失败" {
		t.Errorf("title %v", zh["title"])
	}
	var texts []string
	var link map[string]any
	for _, line := range zh["content"].([]any) {
		for _, el := range line.([]any) {
			el := el.(map[string]any)
			switch el["tag"] {
			case "text":
				texts = append(texts, el["text"].(string))
			case "a":
				link = el
			}
		}
	}
	if all := strings.Join(texts, "\n"); !strings.Contains(all, "失败条数: 7") || !strings.Contains(all, "接收 order.paid (分组 billing): 5") {
		t.Errorf("post lines:\n%s", all)
	}
	if link == nil || link["href"] != "http://127.0.0.1:8080/gocap" {
		t.Errorf("dashboard link %v", link)
	}
	text := reqs[1].JSON(t)
	if str(t, text, "msg_type") != "text" || !strings.HasPrefix(str(t, text, "content", "text"), "gocap [orders-api]: 7 messages failed") {
		t.Errorf("text message %s", reqs[1].Body)
	}
	if str(t, text, "sign") == "" {
		t.Error("the text message is not signed")
	}

	bad := newRobot(t, http.StatusOK, `{"code":19021,"msg":"sign match fail or timestamp is not within one hour from current time"}`)
	if err := (alert.Feishu{URL: bad.URL, Secret: "x"}).Post(context.Background(), sample("en")); err == nil || !strings.Contains(err.Error(), "19021") {
		t.Errorf("Feishu code 19021: err = %v", err)
	}
}

// Slack gets text (the notification's fallback) and blocks: a header and
// a mrkdwn section, with &, <, > escaped and links in <url|text> form.
func TestSlackBlocks(t *testing.T) {
	r := newRobot(t, http.StatusOK, "ok")
	if err := (alert.Slack{URL: r.URL + "/services/T0/B0/x"}).Post(context.Background(), sample("en")); err != nil {
		t.Fatal(err)
	}
	body := r.requests()[0].JSON(t)
	if str(t, body, "text") != "gocap [orders-api]: 7 messages failed" {
		t.Errorf("text %v", body["text"])
	}
	blocks := body["blocks"].([]any)
	if len(blocks) != 2 {
		t.Fatalf("blocks %v", blocks)
	}
	if str(t, blocks[0], "type") != "header" || str(t, blocks[0], "text", "type") != "plain_text" {
		t.Errorf("first block %v", blocks[0])
	}
	if str(t, blocks[1], "type") != "section" || str(t, blocks[1], "text", "type") != "mrkdwn" {
		t.Errorf("second block %v", blocks[1])
	}
	md := str(t, blocks[1], "text", "text")
	for _, want := range []string{"*Failed:* 7", "card &lt;declined&gt; &amp; retried",
		"<http://127.0.0.1:8080/gocap/received/101|#101>", "<http://127.0.0.1:8080/gocap|Open the dashboard>"} {
		if !strings.Contains(md, want) {
			t.Errorf("the section lacks %q:\n%s", want, md)
		}
	}
}

// hostile is a summary whose topics, group, id and error (an endpoint's
// answer quoted by a webhook transport) are full of Markdown and of the
// characters Slack reserves.
func hostile() alert.Summary {
	at := time.Date(2026, 3, 1, 10, 0, 1, 0, time.UTC)
	return alert.Summary{
		Source: "orders*api", Count: 2, First: at, Last: at, Locale: "en", DashboardURL: "https://ops.example/gocap",
		Topics: []alert.TopicCount{
			{Kind: "published", Topic: "a]b)c_d", Count: 1},
			{Kind: "received", Topic: "a&b", Group: "bill[ing]", Count: 1},
		},
		Examples: []alert.Example{{Kind: "published", ID: 1, MsgID: `m<1>\`, Topic: "a]b)c_d", Attempts: 3, At: at,
			Error: "webhook: HTTP 500 from https://merchant.example/cb: [Reset your password](https://phish.example/login) " +
				"![x](https://track.example/p.png) **urgent** _now_ ~~old~~ `code` <font color=\"warning\">red</font> <@zhangsan>"}},
	}
}

// In the Markdown DingTalk and WeCom get, what comes from elsewhere is
// text: an error quoting an endpoint's answer adds no link, image,
// emphasis or mention, and a ']' in a topic or a '\' ending an id does not
// break the links to the dashboard.
func TestMarkdownNeutralizesContent(t *testing.T) {
	md := hostile().Markdown()
	for _, want := range []string{
		"### gocap [orders＊api]: 2 messages failed",
		"- [published a］b)c＿d: 1](https://ops.example/gocap/published?name=a%5Db%29c_d&status=Failed)",
		"- [received a&b (group bill［ing］): 1](https://ops.example/gocap/received?group=bill%5Bing%5D&name=a%26b&status=Failed)",
		"- published a］b)c＿d [#m＜1＞＼](https://ops.example/gocap/published/1), 3 attempts: " +
			"webhook: HTTP 500 from https://merchant.example/cb: ［Reset your password］(https://phish.example/login) " +
			"!［x］(https://track.example/p.png) ＊＊urgent＊＊ ＿now＿ ～～old～～ ｀code｀ ＜font color=\"warning\"＞red＜/font＞ ＜@zhangsan＞",
		"[Open the dashboard](https://ops.example/gocap)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the Markdown lacks\n%s\nin\n%s", want, md)
		}
	}
	// The syntax left is the summary's own: 4 links, 4 bold labels.
	if n := strings.Count(md, "]("); n != 4 {
		t.Errorf("%d links, want 4 (2 topics, 1 example, the dashboard):\n%s", n, md)
	}
	if n := strings.Count(md, "*"); n != 4*4 {
		t.Errorf("%d asterisks, want those of 4 bold labels:\n%s", n, md)
	}
	for _, c := range []string{"<", ">", "`", "~", "\\"} {
		if strings.Contains(md, c) {
			t.Errorf("the Markdown has %q:\n%s", c, md)
		}
	}
	// The plain text keeps every character.
	if txt := hostile().Text(); !strings.Contains(txt, "[Reset your password](https://phish.example/login)") || !strings.Contains(txt, "published a]b)c_d: 1") {
		t.Errorf("the plain text changed the content:\n%s", txt)
	}
}

// Slack's link text is escaped once: a topic a&b reads a&b.
func TestSlackEscapesLinkTextOnce(t *testing.T) {
	r := newRobot(t, http.StatusOK, "ok")
	if err := (alert.Slack{URL: r.URL + "/services/T0/B0/x"}).Post(context.Background(), hostile()); err != nil {
		t.Fatal(err)
	}
	blocks := r.requests()[0].JSON(t)["blocks"].([]any)
	md := str(t, blocks[1], "text", "text")
	for _, want := range []string{
		"<https://ops.example/gocap/received?group=bill%5Bing%5D&name=a%26b&status=Failed|received a&amp;b (group bill[ing]): 1>",
		"<https://ops.example/gocap/published/1|#m&lt;1&gt;\\>",
		"&lt;font color=\"warning\"&gt;red&lt;/font&gt; &lt;@zhangsan&gt;",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the section lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "&amp;amp;") || strings.Contains(md, "&amp;lt;") {
		t.Errorf("text escaped twice:\n%s", md)
	}
}

// The generic webhook gets the summary's fields as JSON, with the
// configured headers.
func TestWebhookJSON(t *testing.T) {
	r := newRobot(t, http.StatusNoContent, "")
	w := alert.Webhook{URL: r.URL + "/hook", Headers: map[string]string{"Authorization": "Bearer t0k"}}
	if err := w.Post(context.Background(), sample("en")); err != nil {
		t.Fatal(err)
	}
	req := r.requests()[0]
	if req.Header.Get("Authorization") != "Bearer t0k" || !strings.HasPrefix(req.Header.Get("Content-Type"), "application/json") {
		t.Errorf("headers %v", req.Header)
	}
	body := req.JSON(t)
	if body["count"] != float64(7) || str(t, body, "title") != "gocap [orders-api]: 7 messages failed" ||
		!strings.Contains(str(t, body, "markdown"), "**Failed:** 7") || !strings.Contains(str(t, body, "text"), "Failed: 7") {
		t.Errorf("body %s", req.Body)
	}
	topics := body["topics"].([]any)
	if len(topics) != 2 || str(t, topics[0], "topic") != "order.paid" || str(t, topics[0], "group") != "billing" {
		t.Errorf("topics %v", topics)
	}
	if ex := body["examples"].([]any); len(ex) != 1 || str(t, ex[0], "msg_id") != "101" {
		t.Errorf("examples %v", ex)
	}
}

// Errors name the host, never the robot's token; 4xx is permanent, 5xx not.
func TestPostErrors(t *testing.T) {
	notFound := newRobot(t, http.StatusNotFound, "no_service")
	err := alert.Slack{URL: notFound.URL + "/services/SECRET-TOKEN"}.Post(context.Background(), sample("en"))
	if err == nil || !alert.IsPermanent(err) || strings.Contains(err.Error(), "SECRET-TOKEN") {
		t.Errorf("HTTP 404: err = %v, want a permanent error without the token", err)
	}
	down := newRobot(t, http.StatusServiceUnavailable, "busy")
	err = alert.Webhook{URL: down.URL + "/?token=SECRET-TOKEN"}.Post(context.Background(), sample("en"))
	if err == nil || alert.IsPermanent(err) || !strings.Contains(err.Error(), "503") {
		t.Errorf("HTTP 503: err = %v, want a transient error", err)
	}
	down.Close()
	err = alert.Webhook{URL: down.URL + "/?token=SECRET-TOKEN"}.Post(context.Background(), sample("en"))
	if err == nil || alert.IsPermanent(err) || strings.Contains(err.Error(), "SECRET-TOKEN") {
		t.Errorf("connection refused: err = %v, want a transient error without the token", err)
	}
	if err := (alert.Webhook{URL: "not a url"}).Post(context.Background(), sample("en")); !alert.IsPermanent(err) {
		t.Errorf("a bad URL: err = %v, want permanent", err)
	}
}
