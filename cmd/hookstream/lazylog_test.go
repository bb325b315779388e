package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"
	"testing/slogtest"

	"github.com/stretchr/testify/require"
)

// TestLazyHandlerConforms runs slog's own conformance tests on a lazy JSON
// handler.
func TestLazyHandlerConforms(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	slogtest.Run(t, func(*testing.T) slog.Handler {
		buf.Reset()
		return newLazyHandler(slog.NewJSONHandler(&buf, nil))
	}, func(t *testing.T) map[string]any {
		var m map[string]any
		require.NoError(t, json.Unmarshal(buf.Bytes(), &m))
		return m
	})
}

// TestLazyHandlerWritesWhatTheHandlerWrites: the same logging through a lazy
// handler and the handler itself gives the same lines.
func TestLazyHandlerWritesWhatTheHandlerWrites(t *testing.T) {
	t.Parallel()
	log := func(l *slog.Logger) {
		l.Info("plain", "k", 1)
		job := l.With("job_id", "job_1", "tenant_id", "t")
		job.Debug("not enabled")
		job.Warn("load job", "error", "boom")
		grouped := job.WithGroup("g").With("a", 1)
		grouped.Error("in group", "b", 2)
		grouped.WithGroup("h").Info("nested", "c", 3)
		job.Info("job again") // the group did not reach its parent
		l.With().WithGroup("").Info("empty With and WithGroup")
	}
	for name, newHandler := range map[string]func(*bytes.Buffer) slog.Handler{
		"text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
		"json": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
	} {
		t.Run(name, func(t *testing.T) {
			var want, got bytes.Buffer
			log(slog.New(newHandler(&want)))
			log(slog.New(newLazyHandler(newHandler(&got))))
			require.Equal(t, stripTimes(t, want.String()), stripTimes(t, got.String()))
		})
	}
}

// stripTimes drops the time of each line, which differs between runs.
func stripTimes(t *testing.T, lines string) []string {
	t.Helper()
	var out []string
	for _, line := range bytes.Split([]byte(lines), []byte("\n")) {
		if i := bytes.Index(line, []byte("level")); i >= 0 {
			out = append(out, string(line[i:]))
		}
	}
	require.NotEmpty(t, out)
	return out
}

// TestLazyHandlerConcurrentFirstUse: goroutines logging at once through a
// logger not yet used make its handler once (run with -race).
func TestLazyHandlerConcurrentFirstUse(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var buf bytes.Buffer
	l := slog.New(newLazyHandler(slog.NewJSONHandler(lockedWriter{&mu, &buf}, nil))).With("job_id", "job_1")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { l.Info("at once") })
	}
	wg.Wait()
	require.Equal(t, 8, bytes.Count(buf.Bytes(), []byte(`"job_id":"job_1"`)))
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
