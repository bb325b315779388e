package integration

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Hostile receivers each get a recorded outcome with a readable reason, and
// none of them holds back a healthy endpoint of the same tenant.
func TestHostileReceivers(t *testing.T) {
	t.Parallel()
	h := start(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	hostile := map[string]http.HandlerFunc{
		"hanging": func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body) // so that a client hang-up ends r.Context()
			select {
			case <-release:
			case <-r.Context().Done():
			}
		},
		"slow": func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(1500 * time.Millisecond)
			w.WriteHeader(http.StatusNoContent)
		},
		"resetting": func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				_ = conn.Close()
			}
		},
		"huge body": func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusOK)
			chunk := []byte(strings.Repeat("x", 1<<20))
			for range 100 { // 100 MB, of which at most 64 KiB is read
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		},
		"redirect to metadata": func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
		},
	}
	wantStatus := map[string]string{"hanging": "failed", "slow": "succeeded", "resetting": "failed", "huge body": "succeeded", "redirect to metadata": "failed"}
	wantError := map[string]string{"hanging": "timeout", "resetting": "EOF", "redirect to metadata": "redirect not followed"}
	ids := map[string]string{}
	for name, handler := range hostile {
		srv := httptest.NewServer(handler)
		t.Cleanup(srv.Close)
		code, _, out := h.call(http.MethodPost, "/v1/endpoints", keyAcme,
			`{"url":"`+srv.URL+`","event_types":["hostile.test"],"attempt_timeout":"3s","retry_schedule":["1h"]}`)
		require.Equal(t, http.StatusCreated, code, out)
		ids[out["id"].(string)] = name
	}
	healthy := newReceiver(t)
	h.createEndpoint(keyAcme, healthy.URL, "healthy.test")

	code, _, _ := h.call(http.MethodPost, "/v1/events", keyAcme, `{"type":"hostile.test","data":{}}`)
	require.Equal(t, http.StatusAccepted, code)
	for i := range 20 {
		code, _, _ := h.call(http.MethodPost, "/v1/events", keyAcme, `{"type":"healthy.test","data":{"n":`+string(rune('0'+i%10))+`}}`)
		require.Equal(t, http.StatusAccepted, code)
	}
	healthy.wait(t, 20, 30*time.Second)

	for id, name := range ids {
		var d map[string]any
		require.Eventually(t, func() bool {
			_, _, out := h.call(http.MethodGet, "/v1/deliveries?"+url.Values{"endpoint": {id}}.Encode(), keyAcme, "")
			list, _ := out["data"].([]any)
			if len(list) != 1 {
				return false
			}
			d = list[0].(map[string]any)
			return d["status"] == wantStatus[name] || (wantStatus[name] == "failed" && d["status"] == "pending")
		}, 30*time.Second, 100*time.Millisecond, "%s: no recorded outcome", name)
		attempt := d["attempts"].([]any)[0].(map[string]any)
		if want := wantError[name]; want != "" {
			require.Contains(t, attempt["error"], want, name)
		}
		if name == "huge body" {
			require.Len(t, attempt["response"], 4<<10, "only the first 4 KiB is kept")
		}
		if name == "redirect to metadata" {
			require.EqualValues(t, http.StatusFound, attempt["status_code"])
		}
	}
}
