package gateway

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"
)

// FuzzGatewayRequest feeds arbitrary bodies, content types and routes
// through the whole gateway handler (guard, decoding, validation, and for
// what passes, a real proxied request to a fake worker). Whatever comes
// in, the gateway must not panic, and every answer must be a success or an
// OpenAI-shaped error whose code is the HTTP status. The seed corpus is in
// testdata/fuzz/FuzzGatewayRequest; `go test` runs it, and
//
//	go test ./internal/gateway -run '^$' -fuzz FuzzGatewayRequest -fuzztime 30s
//
// explores further.
func FuzzGatewayRequest(f *testing.F) {
	for _, s := range []struct {
		route       uint8
		contentType string
		body        string
	}{
		{0, "application/json", `{"prompt":"hi","max_tokens":2}`},
		{0, "application/json", `{"prompt":[1,2,3],"max_tokens":1,"stream":true}`},
		{1, "application/json", `{"messages":[{"role":"user","content":"hi"}],"stream":true}`},
		{1, "application/json; charset=utf-8", `{"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}]}`},
		{2, "application/json", `{"prompt":"x","max_new_tokens":3,"temperature":0.5}`},
		{0, "text/plain", `{"prompt":"hi"}`},
		{0, "", `{"prompt":"\xff\xfe"}`},
		{0, "application/json", `{"prompt":"hi","max_tokens":-5}`},
		{0, "application/json", `{"prompt":1e309}`},
		{1, "application/json", `{"messages":null}`},
		{3, "application/json", ``},
	} {
		f.Add(s.route, s.contentType, []byte(s.body))
	}
	w := newFakeWorkerF(f)
	set := Defaults()
	set.IdleTimeout, set.MaxBodyBytes = 0, 4096
	s, err := New(set, testProfile(w.URL), Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = s.Close(f.Context()) })
	h := s.Handler()
	routes := []string{"/v1/completions", "/v1/chat/completions", "/generate", "/admin/worker/stop"}
	f.Fuzz(func(t *testing.T, route uint8, contentType string, body []byte) {
		path := routes[int(route)%len(routes)]
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		rec := httptest.NewRecorder()
		done := make(chan struct{})
		go func() { h.ServeHTTP(rec, req); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("%s %q %q: no answer within 10s\n%s", path, contentType, body, buf[:n])
		}
		res := rec.Result()
		if res.StatusCode == http.StatusOK || res.StatusCode == http.StatusAccepted {
			return
		}
		var e struct {
			Error struct {
				Message string `json:"message"`
				Code    int    `json:"code"`
			} `json:"error"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Message == "" || e.Error.Code != res.StatusCode {
			t.Fatalf("%s %q %q: status %d with a body that is not an OpenAI error: %q", path, contentType, body, res.StatusCode, rec.Body.String())
		}
		if res.StatusCode >= 500 && !strings.Contains(e.Error.Message, "worker") {
			t.Fatalf("%s %q %q: server error %d: %s", path, contentType, body, res.StatusCode, e.Error.Message)
		}
	})
}

// newFakeWorkerF is a minimal healthy worker for the fuzz target: every
// request gets a short completion (or stream).
func newFakeWorkerF(f *testing.F) *httptest.Server {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			return
		}
		var req struct {
			Stream bool `json:"stream"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		if req.Stream {
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = w.Write([]byte("data: {\"choices\":[{\"index\":0,\"text\":\"a\"}]}\n\ndata: [DONE]\n\n"))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id":"c","object":"text_completion","model":"m","choices":[{"index":0,"text":"a","finish_reason":"length"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`))
	}))
	f.Cleanup(ts.Close)
	return ts
}
