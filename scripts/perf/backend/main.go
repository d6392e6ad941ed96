// Command backend is the trivial OpenAI-compatible server of the
// side-by-side proxy measurement (scripts/perf/sidebyside.sh): it answers
// POST /v1/completions at once with a small JSON completion of exactly
// max_tokens tokens, so what a proxy in front of it adds is nearly all
// there is to measure. GET /health and GET /v1/models make it a valid
// external engine for `llmlab serve`. It prints "listening on ADDR" once
// ready and serves until killed. With "stream": true it streams max_tokens
// events as vLLM does (one token per `data:` event, a usage event, then
// `data: [DONE]`), flushing each, --event-interval apart.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on")
	flag.DurationVar(&eventInterval, "event-interval", 0, "pause between streamed events (0: none)")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "backend:", err)
		os.Exit(1)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {})
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"object":"list","data":[{"id":"m","object":"model","owned_by":"perf"}]}`))
	})
	mux.HandleFunc("POST /v1/completions", complete)
	fmt.Printf("listening on %s\n", ln.Addr())
	if err := (&http.Server{Handler: mux}).Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, "backend:", err)
		os.Exit(1)
	}
}

// eventInterval is set once from the command line, before serving.
var eventInterval time.Duration

// complete answers with max_tokens tokens of "x" and the usage vLLM sends.
func complete(w http.ResponseWriter, r *http.Request) {
	var req struct {
		MaxTokens int  `json:"max_tokens"`
		Prompt    any  `json:"prompt"`
		Stream    bool `json:"stream"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, `{"error":{"message":"bad json","type":"BadRequestError","code":400}}`, http.StatusBadRequest)
		return
	}
	n := max(req.MaxTokens, 1)
	prompt := 1
	if ids, ok := req.Prompt.([]any); ok {
		prompt = len(ids)
	}
	usage := `"usage":{"prompt_tokens":` + strconv.Itoa(prompt) + `,"completion_tokens":` + strconv.Itoa(n) +
		`,"total_tokens":` + strconv.Itoa(prompt+n) + `}`
	if req.Stream {
		stream(w, n, usage)
		return
	}
	text := make([]byte, n)
	for i := range text {
		text[i] = 'x'
	}
	body := `{"id":"cmpl-perf","object":"text_completion","created":0,"model":"m","choices":[{"index":0,"text":"` +
		string(text) + `","finish_reason":"length"}],` + usage + `}`
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write([]byte(body))
}

// stream writes n token events, the usage event and [DONE], flushing each.
func stream(w http.ResponseWriter, n int, usage string) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	rc := http.NewResponseController(w)
	event := []byte(`data: {"id":"cmpl-perf","object":"text_completion","created":0,"model":"m","choices":[{"index":0,"text":"x","finish_reason":null}]}` + "\n\n")
	for i := 0; i < n; i++ {
		if i > 0 && eventInterval > 0 {
			time.Sleep(eventInterval)
		}
		if _, err := w.Write(event); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
	_, _ = w.Write([]byte(`data: {"id":"cmpl-perf","object":"text_completion","created":0,"model":"m","choices":[],` + usage + "}\n\ndata: [DONE]\n\n"))
	_ = rc.Flush()
}
