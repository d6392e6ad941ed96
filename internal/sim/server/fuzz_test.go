package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/llmlab/llmlab/internal/openai"
	"github.com/llmlab/llmlab/internal/sim/engine"
)

// FuzzHandler sends arbitrary bodies through the whole HTTP handler and
// engine loop (with near-zero step times so requests finish at once): the
// answer is always a 200 (a JSON body, or a stream that ends in [DONE]) or
// a 4xx OpenAI error whose code matches the status.
func FuzzHandler(f *testing.F) {
	for _, s := range []string{
		`{"prompt":"hi","max_tokens":3}`, `{"prompt":[1,2,3],"stream":true,"stream_options":{"include_usage":true}}`,
		`{"prompt":"x","max_tokens":"x"}`, `{"prompt":["a","b"]}`, `{"prompt":"x","min_tokens":2,"max_tokens":1}`,
		`{"messages":[{"role":"user","content":"hi"}],"stream":true,"max_completion_tokens":4}`,
		`{"messages":[{"role":"user","content":[{"type":"text","text":"a"}]}],"n":2}`, `[]`, `{`, ``, `{"model":"zz"}`,
		`{"prompt":"hi","max_tokens":30,"stop":[" the","a"],"stop_token_ids":[300,301],"logprobs":2,"stream":true}`,
		`{"messages":[{"role":"user","content":"hi"}],"logprobs":true,"top_logprobs":3,"stop":"e","temperature":0}`,
		"{\"prompt\":\"\xff\"}", `{"messages":[{"role":"wizard","content":"x"}]}`,
	} {
		f.Add(uint8(0), []byte(s))
		f.Add(uint8(1), []byte(s))
	}
	cfg := testConfig()
	cfg.Engine.Calibration = &engine.Calibration{A: 1e-9}
	ts := startServer(f, cfg, nil)
	h := ts.handler()
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		path := "/v1/completions"
		if which%2 == 1 {
			path = "/v1/chat/completions"
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body)))
		out := rec.Body.Bytes()
		switch {
		case rec.Code == http.StatusOK && bytes.HasPrefix(out, []byte("data: ")):
			if !bytes.HasSuffix(out, []byte("data: [DONE]\n\n")) {
				t.Fatalf("stream without [DONE]: %q", out)
			}
		case rec.Code == http.StatusOK:
			if !json.Valid(out) {
				t.Fatalf("200 with invalid JSON: %q", out)
			}
		case rec.Code >= 400 && rec.Code < 500:
			var e openai.ErrorResponse
			if err := json.Unmarshal(out, &e); err != nil || e.Error.Code != rec.Code || e.Error.Message == "" {
				t.Fatalf("%d with body %q", rec.Code, out)
			}
		default:
			t.Fatalf("status %d for %q: %q", rec.Code, body, out)
		}
	})
}
