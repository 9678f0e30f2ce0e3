// Package alert tells people when messages fail: it turns
// outbox.Options.OnFailed into one summary per window posted to a chat
// robot — DingTalk (钉钉), WeCom (企业微信), Feishu/Lark (飞书), Slack — or
// to any JSON webhook.
//
//	n, _ := alert.New(alert.Config{
//		Sink:         alert.DingTalk{URL: robotURL, Secret: "SEC…"},
//		Window:       30 * time.Second,
//		DashboardURL: "https://ops.example.com/gocap",
//		Locale:       alert.LocaleChinese,
//	})
//	go n.Run(ctx)
//	ob, _ := outbox.New(store, tr, outbox.Options{OnFailed: n.OnFailed})
//
// # Aggregation and rate limits
//
// A burst of failures makes one post, not one per message: the first
// failure after a quiet spell opens a window (Config.Window); when it
// ends, one summary is posted with the number of failures, the topics
// (and consumer groups) involved with their counts, the first few failed
// messages with their ids and errors, and links into the dashboard. Two
// posts are at least a window apart, at most Config.MaxPerHour are made
// in an hour (failures past the cap are posted together later), and a
// Config.Threshold lets windows with fewer failures pass unposted.
//
// OnFailed runs on the outbox processor's goroutine, so it never waits for
// the network: it counts the failure under a lock and returns. What it
// keeps is bounded (counts per topic and a few examples) however many
// messages fail, so no failure is dropped from the counts.
//
// # Delivery and loops
//
// A post that fails (a network error, HTTP 5xx or 429, a robot's non-zero
// errcode) is tried Config.Attempts times in all, with a doubling wait; then
// the notifier logs an error and carries the failures into the next
// summary, which only new failures start: an endpoint that is down costs a
// bounded number of requests per window and never a notification about
// itself. A 4xx answer is not retried (see [Permanent]).
//
// Summaries are posted straight to the Sink, not through the outbox, so
// their failures never reach OnFailed. To post them through an outbox
// instead (for its retries, history and dashboard), publish them on a
// topic of their own from a [SinkFunc] and set Config.ReservedTopic to it:
// failures of that topic are ignored.
package alert
