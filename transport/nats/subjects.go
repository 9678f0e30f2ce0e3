package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"unicode"

	"github.com/nats-io/nats.go/jetstream"
)

// checkWords returns an error naming topic if a word of it cannot be a
// NATS subject token: empty, with white space, or NATS's '>' wildcard.
// '*' and '#' are accepted here; the callers decide where they may stand.
func checkWords(topic string) ([]string, error) {
	if topic == "" {
		return nil, errors.New("topic is empty")
	}
	words := strings.Split(topic, ".")
	for _, w := range words {
		switch {
		case w == "":
			return nil, fmt.Errorf("topic %q has an empty word (leading, trailing or double dot)", topic)
		case strings.ContainsFunc(w, unicode.IsSpace):
			return nil, fmt.Errorf("topic %q contains white space, which NATS subjects cannot", topic)
		case w == ">":
			return nil, fmt.Errorf("topic %q: '>' is NATS's wildcard; gocap's patterns use '#'", topic)
		}
	}
	return words, nil
}

// subjectOf returns the subject a message of topic is published to.
func (t *Transport) subjectOf(topic string) (string, error) {
	words, err := checkWords(topic)
	if err != nil {
		return "", err
	}
	if slices.Contains(words, "*") || slices.Contains(words, "#") {
		return "", fmt.Errorf("topic %q: a message is sent to a topic, not a pattern", topic)
	}
	return t.cfg.SubjectPrefix + topic, nil
}

// filterSubjects returns the NATS subjects a gocap topic pattern stands
// for: '*' stays, a final '#' gives the words before it alone and followed
// by '>'.
func (t *Transport) filterSubjects(pattern string) ([]string, error) {
	words, err := checkWords(pattern)
	if err != nil {
		return nil, err
	}
	if words[0] == "*" || words[0] == "#" {
		return nil, fmt.Errorf("pattern %q: the first word names the stream and cannot be a wildcard", pattern)
	}
	for i, w := range words {
		if w == "#" && i != len(words)-1 {
			return nil, fmt.Errorf("pattern %q: NATS subjects cannot express '#' before the last word", pattern)
		}
	}
	p := t.cfg.SubjectPrefix
	if words[len(words)-1] != "#" {
		return []string{p + pattern}, nil
	}
	base := strings.Join(words[:len(words)-1], ".")
	return []string{p + base, p + base + ".>"}, nil
}

// streamOf returns the name of the stream of topic (a name or pattern):
// Config.StreamName's, or the first word.
func (t *Transport) streamOf(topic string) (string, error) {
	var name string
	if t.cfg.StreamName != nil {
		name = t.cfg.StreamName(topic)
	} else {
		name, _, _ = strings.Cut(topic, ".")
	}
	if name == "" || strings.ContainsAny(name, ".*> \t\r\n/\\") {
		return "", fmt.Errorf("topic %q: %q is not a valid stream name", topic, name)
	}
	return name, nil
}

// covers reports whether the NATS subject pattern a matches every subject
// that b matches.
func covers(a, b string) bool {
	if a == b {
		return true
	}
	at, bt := strings.Split(a, "."), strings.Split(b, ".")
	for i, w := range at {
		if w == ">" {
			return len(bt) > i
		}
		if i >= len(bt) || bt[i] == ">" {
			return false
		}
		if w != "*" && (bt[i] == "*" || bt[i] != w) {
			return false
		}
	}
	return len(at) == len(bt)
}

// mergeSubjects returns have with want added, leaving out every subject
// that another one covers (JetStream refuses overlapping subjects in one
// stream), and whether that differs from have.
func mergeSubjects(have, want []string) ([]string, bool) {
	all := slices.Concat(have, want)
	var out []string
	for i, s := range all {
		covered := false
		for j, o := range all {
			// Of two equal subjects, keep the first.
			if i != j && covers(o, s) && (o != s || j < i) {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, s)
		}
	}
	changed := len(out) != len(have)
	for _, s := range out {
		if !slices.Contains(have, s) {
			changed = true
		}
	}
	return out, changed
}

// normalize makes s usable in a consumer name, as CAP's Helper.Normalized
// does for '.', '>', '*' and spaces, and for the other characters NATS
// refuses there.
func normalize(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '.' || r == '*' || r == '>' || r == '/' || r == '\\' || unicode.IsSpace(r) || unicode.IsControl(r) {
			return '_'
		}
		return r
	}, s)
}

// consumerName returns the durable name of group's consumer of subject.
func consumerName(group, subject string) string {
	return "gocap-" + normalize(group) + "-" + normalize(subject)
}

// streams creates streams and adds subjects to them, remembering the
// subjects known to be in a stream.
type streams struct {
	js  jetstream.JetStream
	cfg *Config
	log *slog.Logger

	mu    sync.Mutex
	known map[string]string // subject → its stream

	ensureMu sync.Mutex      // one change of streams at a time in this process
	warned   map[string]bool // streams whose storage was warned about; under ensureMu
}

func newStreams(js jetstream.JetStream, cfg *Config, log *slog.Logger) *streams {
	return &streams{js: js, cfg: cfg, log: log, known: map[string]string{}, warned: map[string]bool{}}
}

// has reports whether subject is known to be in a stream.
func (s *streams) has(subject string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.known[subject]
	return ok
}

// forget drops what is known of stream's subjects.
func (s *streams) forget(stream string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for subj, st := range s.known {
		if st == stream {
			delete(s.known, subj)
		}
	}
}

// ensure makes stream exist and hold subjects: it creates the stream with
// the configured storage and limits if it is missing, and otherwise adds
// the subjects it does not cover, keeping the rest of its configuration.
// With Config.FixedStreams it does nothing.
func (s *streams) ensure(ctx context.Context, stream string, subjects []string) error {
	if s.cfg.FixedStreams {
		return nil
	}
	missing := slices.DeleteFunc(slices.Clone(subjects), s.has)
	if len(missing) == 0 {
		return nil
	}
	s.ensureMu.Lock()
	defer s.ensureMu.Unlock()
	st, err := s.js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = s.js.CreateStream(ctx, s.config(stream, subjects))
		if err == nil {
			s.remember(stream, subjects)
			return nil
		}
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("creating stream %q with subjects %q: %w", stream, subjects, err)
		}
		st, err = s.js.Stream(ctx, stream) // created by another process meanwhile
	}
	if err != nil {
		return fmt.Errorf("reading stream %q: %w", stream, err)
	}
	cfg := st.CachedInfo().Config
	if cfg.Storage != s.cfg.Storage && !s.warned[stream] {
		s.warned[stream] = true
		s.log.Warn("gocap: an existing NATS stream's storage is not Config.Storage; gocap uses it as it is, but "+
			"a DotNetCore.CAP service sharing it must ask for the same storage, or the server refuses its stream update and its topics are not added",
			"stream", stream, "storage", cfg.Storage.String(), "config_storage", s.cfg.Storage.String())
	}
	merged, changed := mergeSubjects(cfg.Subjects, subjects)
	if changed {
		cfg.Subjects = merged
		if _, err := s.js.UpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("adding subjects %q to stream %q: %w", subjects, stream, err)
		}
	}
	s.remember(stream, subjects)
	return nil
}

func (s *streams) remember(stream string, subjects []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, subj := range subjects {
		s.known[subj] = stream
	}
}

// config returns the configuration of a new stream.
func (s *streams) config(name string, subjects []string) jetstream.StreamConfig {
	c := s.cfg
	cfg := jetstream.StreamConfig{
		Name:       name,
		Subjects:   subjects,
		Storage:    c.Storage,
		Replicas:   c.Replicas,
		Retention:  c.Retention,
		Duplicates: c.DuplicateWindow,
	}
	if c.MaxAge > 0 {
		cfg.MaxAge = c.MaxAge
		cfg.Duplicates = min(cfg.Duplicates, c.MaxAge)
	}
	return cfg
}
