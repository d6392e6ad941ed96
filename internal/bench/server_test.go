package bench

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmlab/llmlab/internal/openai"
)

// testServer is a vLLM look-alike with exact timings: the first token
// TTFT after the request arrives, then one token every PerToken, each as its
// own SSE chunk, then the usage chunk and [DONE], as vLLM streams with
// stream_options.include_usage. Sleeps aim at absolute deadlines so that
// timer overshoot does not accumulate over a stream.
type testServer struct {
	TTFT     time.Duration
	PerToken time.Duration
	// Mode selects a failure: "" (normal), "status" (Status code),
	// "stream_error" (error event after the first token), "truncate" (end
	// the body without [DONE]), "abort" (drop the connection mid-stream),
	// "short" (half the tokens, then [DONE]), "hang" (never answer),
	// "json_ok", "json_error", "html" (a 200 that is not an event stream).
	Mode   string
	Status int
	// Serial makes the server handle one request at a time, as a stalled
	// engine would.
	Serial bool
	// Slots, when > 0, caps requests served at once (a server of fixed
	// capacity); others wait their turn inside the server.
	Slots int
	// TTFTOf, when set, gives the TTFT of the n-th request (0-based)
	// instead of TTFT: a server whose latency drifts over a run.
	TTFTOf func(n int64) time.Duration
	// ConnState, when set, is the server's connection-state hook.
	ConnState func(net.Conn, http.ConnState)

	mu    sync.Mutex
	count atomic.Int64
	slots chan struct{}
	srv   *httptest.Server
}

func (s *testServer) start(t testing.TB) string {
	t.Helper()
	if s.Slots > 0 {
		s.slots = make(chan struct{}, s.Slots)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(openai.ModelList{Object: "list", Data: []openai.Model{{ID: "test-model", Object: "model"}}})
	})
	mux.HandleFunc("POST /v1/completions", s.complete)
	mux.HandleFunc("POST /v1/chat/completions", s.complete)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.srv = httptest.NewUnstartedServer(mux)
	s.srv.Listener.Close()
	s.srv.Listener = l
	s.srv.Config.ConnState = s.ConnState
	s.srv.Start()
	t.Cleanup(s.srv.Close)
	return s.srv.URL
}

func (s *testServer) complete(w http.ResponseWriter, r *http.Request) {
	arrived := time.Now()
	var req struct {
		MaxTokens int  `json:"max_tokens"`
		Stream    bool `json:"stream"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		openai.WriteError(w, http.StatusBadRequest, "bad body: %v", err)
		return
	}
	if s.Serial {
		s.mu.Lock()
		defer s.mu.Unlock()
		arrived = time.Now()
	}
	if s.slots != nil {
		select {
		case s.slots <- struct{}{}:
			defer func() { <-s.slots }()
		case <-r.Context().Done():
			return
		}
		arrived = time.Now()
	}
	switch s.Mode {
	case "status":
		if s.Status == http.StatusTooManyRequests {
			openai.WriteRetryAfter(w, time.Second, "busy")
			return
		}
		openai.WriteError(w, s.Status, "injected failure")
		return
	case "hang":
		<-r.Context().Done()
		return
	case "json_ok":
		// A server that ignores "stream": a whole JSON completion, 200.
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(openai.CompletionResponse{
			ID: "cmpl-1", Object: openai.ObjectTextCompletion, Model: "test-model",
			Choices: []openai.CompletionChoice{{Text: "x"}},
			Usage:   &openai.Usage{PromptTokens: 200, CompletionTokens: req.MaxTokens, TotalTokens: 200 + req.MaxTokens},
		})
		return
	case "json_error":
		// An error object as a plain JSON body with status 200.
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(openai.NewError(http.StatusInternalServerError, "engine died"))
		return
	case "html":
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte("<html>proxy login</html>\n"))
		return
	}
	ttft := s.TTFT
	if s.TTFTOf != nil {
		ttft = s.TTFTOf(s.count.Add(1) - 1)
	}
	n := req.MaxTokens
	if s.Mode == "short" {
		n /= 2
	}
	sleepUntil := func(at time.Time) bool {
		d := time.Until(at)
		if d <= 0 {
			return true
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-r.Context().Done():
			return false
		}
	}
	sse := openai.NewSSEWriter(w)
	for i := range n {
		if !sleepUntil(arrived.Add(ttft + time.Duration(i)*s.PerToken)) {
			return
		}
		fr := (*string)(nil)
		if i == n-1 {
			fr = openai.StringPtr(openai.FinishLength)
		}
		if err := sse.WriteJSON(openai.CompletionResponse{
			ID: "cmpl-1", Object: openai.ObjectTextCompletion, Model: "test-model",
			Choices: []openai.CompletionChoice{{Text: fmt.Sprintf(" t%d", i), FinishReason: fr}},
		}); err != nil {
			return
		}
		if i == 0 {
			switch s.Mode {
			case "stream_error":
				_ = sse.WriteJSON(openai.NewError(http.StatusInternalServerError, "engine died"))
				_ = sse.WriteDone()
				return
			case "truncate":
				return
			case "abort":
				panic(http.ErrAbortHandler) // the server drops the connection
			}
		}
	}
	_ = sse.WriteJSON(openai.CompletionResponse{
		ID: "cmpl-1", Object: openai.ObjectTextCompletion, Model: "test-model", Choices: []openai.CompletionChoice{},
		Usage: &openai.Usage{PromptTokens: 200, CompletionTokens: n, TotalTokens: 200 + n},
	})
	_ = sse.WriteDone()
}
