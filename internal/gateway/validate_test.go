package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/llmlab/llmlab/internal/profile"
	"github.com/llmlab/llmlab/internal/validate"
)

func TestValidationLimitsFromProfile(t *testing.T) {
	p, err := profile.Load("throughput")
	if err != nil {
		t.Fatal(err)
	}
	lim := validationLimits(p)
	if lim.ServedName != p.ModelName() || lim.MaxModelLen != p.EngineArgs.MaxModelLen || lim.Vocab != 151936 || lim.MaxN != 1 || lim.SkipTextLength {
		t.Fatalf("sim profile: %+v", lim)
	}
	p.Engine, p.Sim.ModelSpec = profile.EngineVLLM, ""
	lim = validationLimits(p)
	if lim.Vocab != 151936 || lim.MaxN != 0 || !lim.SkipTextLength {
		t.Fatalf("vllm profile: %+v", lim)
	}
	p.Model = "someone/unknown-7b"
	if lim = validationLimits(p); lim.Vocab != 0 {
		t.Fatalf("unknown model: vocabulary %d, want unchecked", lim.Vocab)
	}
}

// FuzzGatewayRefusals: whatever validate refuses, the gateway answers with
// exactly validate's status and body, and its (simulated) worker stays
// STOPPED. Accepted bodies are not sent: they would start the worker.
// Seeds: testdata/fuzz/FuzzGatewayRefusals and the ones below.
func FuzzGatewayRefusals(f *testing.F) {
	for _, s := range []string{
		`{"prompt":"hi","max_tokens":-5}`, `{"messages":[{"role":"wizard","content":"x"}]}`,
		`{"prompt":[1000000000000]}`, `{"model":"x","prompt":"hi"}`, "{\"prompt\":\"\xff\"}", `{"prompt":"hi","n":1000}`,
	} {
		f.Add(false, []byte(s))
		f.Add(true, []byte(s))
	}
	p, err := profile.Load("throughput")
	if err != nil {
		f.Fatal(err)
	}
	set := Defaults()
	set.IdleTimeout = 0
	s, err := New(set, p, Options{Executable: "/nonexistent/llmlab"})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	lim := validationLimits(p)
	h := s.Handler()
	f.Fuzz(func(t *testing.T, chat bool, body []byte) {
		path, check := "/v1/completions", validate.Completion
		if chat {
			path, check = "/v1/chat/completions", validate.Chat
		}
		_, want := check(body, lim)
		if want == nil || len(bytes.TrimSpace(body)) == 0 {
			return // accepted (would wake the worker), or refused by readBody first
		}
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		h.ServeHTTP(rec, req)
		wantBody, _ := json.Marshal(want)
		if rec.Code != want.Error.Code || !bytes.Equal(bytes.TrimSpace(rec.Body.Bytes()), wantBody) {
			t.Fatalf("%q: gateway %d %s, validate %d %s", body, rec.Code, rec.Body.Bytes(), want.Error.Code, wantBody)
		}
		if st := s.Supervisor().State().String(); st != "STOPPED" {
			t.Fatalf("worker %s after a refused request", st)
		}
	})
}
