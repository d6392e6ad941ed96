package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// invalidRequests are requests the worker refuses with a 4xx (issue 11 §3):
// each must be refused by the gateway too, with the same bytes, without
// starting a stopped worker.
var invalidRequests = []struct {
	name, path, body string
	status           int
}{
	{"max_tokens -5", "/v1/completions", `{"prompt":"hi","max_tokens":-5}`, 400},
	{"max_tokens 0", "/v1/completions", `{"prompt":"hi","max_tokens":0}`, 400},
	{"max_tokens 1e9", "/v1/completions", `{"prompt":"hi","max_tokens":1000000000}`, 400},
	{"temperature -3", "/v1/completions", `{"prompt":"hi","temperature":-3}`, 400},
	{"top_p 5", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"top_p":5}`, 400},
	{"n 1000", "/v1/completions", `{"prompt":"hi","n":1000}`, 400},
	{"n 0", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"n":0}`, 400},
	{"5000-token prompt", "/v1/completions", `{"prompt":"` + strings.Repeat(" word", 5000) + `"}`, 400},
	{"5000-token chat", "/v1/chat/completions", `{"messages":[{"role":"user","content":"` + strings.Repeat(" word", 5000) + `"}]}`, 400},
	{"prompt + max_tokens too long", "/v1/completions", `{"prompt":"` + strings.Repeat(" word", 300) + `","max_tokens":300}`, 400},
	{"token id 1e12", "/v1/completions", `{"prompt":[1,2,1000000000000]}`, 400},
	{"token id = vocab", "/v1/completions", `{"prompt":[151936]}`, 400},
	{"negative token id", "/v1/completions", `{"prompt":[-1]}`, 400},
	{"unknown role", "/v1/chat/completions", `{"messages":[{"role":"wizard","content":"hi"}]}`, 400},
	{"no role", "/v1/chat/completions", `{"messages":[{"content":"hi"}]}`, 400},
	{"invalid UTF-8", "/v1/completions", "{\"prompt\":\"h\xff\xfei\"}", 400},
	{"wrong type", "/v1/completions", `{"prompt":"hi","max_tokens":"many"}`, 400},
	{"float max_tokens", "/v1/completions", `{"prompt":"hi","max_tokens":1.5}`, 400},
	{"not an object", "/v1/chat/completions", `[1,2]`, 400},
	{"malformed", "/v1/completions", `{"prompt":"hi"`, 400},
	{"empty prompt", "/v1/completions", `{"prompt":""}`, 400},
	{"no messages", "/v1/chat/completions", `{"messages":[]}`, 400},
	{"min_tokens > max_tokens", "/v1/completions", `{"prompt":"hi","max_tokens":2,"min_tokens":5}`, 400},
	{"stream_options without stream", "/v1/completions", `{"prompt":"hi","stream_options":{"include_usage":true}}`, 400},
	{"presence_penalty 3", "/v1/completions", `{"prompt":"hi","presence_penalty":3}`, 400},
	{"logprobs 21", "/v1/completions", `{"prompt":"hi","logprobs":21}`, 400},
	{"top_logprobs without logprobs", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"top_logprobs":2}`, 400},
	{"stop of wrong type", "/v1/completions", `{"prompt":"hi","stop":7}`, 400},
	{"stop token outside vocabulary", "/v1/completions", `{"prompt":"hi","stop_token_ids":[200000]}`, 400},
	{"unknown model", "/v1/chat/completions", `{"model":"gpt-9","messages":[{"role":"user","content":"hi"}]}`, 404},
	{"unknown model (completions)", "/v1/completions", `{"model":"Qwen/Qwen2.5-0.5B-Instruct","prompt":"hi"}`, 404},
}

func postRaw(t *testing.T, url, body string) (int, []byte) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// TestServeRefusesInvalidRequestsWithoutWakingTheWorker: against a gateway
// whose worker is stopped, every invalid request gets its 4xx and the
// worker stays STOPPED, never started; a valid request then still works.
func TestServeRefusesInvalidRequestsWithoutWakingTheWorker(t *testing.T) {
	_, base := startServe(t)
	if st := getStatus(t, base); st.Worker.State != "STOPPED" {
		t.Fatalf("worker %s at start, want STOPPED", st.Worker.State)
	}
	for _, c := range invalidRequests {
		code, body := postRaw(t, base+c.path, c.body)
		var e struct {
			Error struct {
				Message string `json:"message"`
				Code    int    `json:"code"`
			} `json:"error"`
		}
		if code != c.status || json.Unmarshal(body, &e) != nil || e.Error.Code != c.status || e.Error.Message == "" {
			t.Errorf("%s: %d %s, want %d with an OpenAI error", c.name, code, body, c.status)
		}
	}
	st := getStatus(t, base)
	if st.Worker.State != "STOPPED" || st.Worker.Starts != 0 {
		t.Fatalf("after invalid requests the worker is %s with %d starts, want STOPPED and 0", st.Worker.State, st.Worker.Starts)
	}
	// The gate is not a wall: a valid request starts the worker and is served.
	if code, body := postRaw(t, base+"/v1/completions", `{"prompt":"hi","max_tokens":3}`); code != 200 {
		t.Fatalf("valid request: %d %s", code, body)
	}
}

// TestGatewayAndSimRefuseAlike: the gateway (worker stopped) and a
// simulated worker configured as the gateway's default profile answer each
// invalid request with the same status and byte-identical bodies.
func TestGatewayAndSimRefuseAlike(t *testing.T) {
	_, gw := startServe(t)
	port := freePort(t)
	sim := "http://127.0.0.1:" + itoa(port)
	// The default profile (configs/model_profiles/throughput.yaml).
	p := start(t, "sim", "--port", itoa(port), "--startup-seconds", "0", "--model", "Qwen/Qwen2.5-0.5B-Instruct",
		"--served-model-name", serveModel, "--max-model-len", "512", "--max-num-seqs", "128",
		"--max-num-batched-tokens", "8192", "--model-spec", "qwen2.5-0.5b")
	waitHTTP(t, p, sim+"/health", 30*time.Second)
	for _, c := range invalidRequests {
		gc, gb := postRaw(t, gw+c.path, c.body)
		sc, sb := postRaw(t, sim+c.path, c.body)
		if gc != sc || !bytes.Equal(gb, sb) {
			t.Errorf("%s:\n gateway %d %s\n sim     %d %s", c.name, gc, gb, sc, sb)
		}
	}
	if st := getStatus(t, gw); st.Worker.Starts != 0 {
		t.Fatalf("the gateway started its worker (%d starts)", st.Worker.Starts)
	}
}
