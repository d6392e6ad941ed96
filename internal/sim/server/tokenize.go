package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/llmlab/llmlab/internal/openai"
	"github.com/llmlab/llmlab/internal/tokenizer"
	"github.com/llmlab/llmlab/internal/validate"
)

// tokenizeRequest is POST /tokenize, in either of vLLM's shapes
// (TokenizeCompletionRequest: prompt; TokenizeChatRequest: messages).
type tokenizeRequest struct {
	Model               string               `json:"model"`
	Prompt              *string              `json:"prompt"`
	Messages            []openai.ChatMessage `json:"messages"`
	AddGenerationPrompt *bool                `json:"add_generation_prompt"`
	ReturnTokenStrs     bool                 `json:"return_token_strs"`
}

// tokenizeResponse is vLLM's TokenizeResponse (serving_tokenization.py).
type tokenizeResponse struct {
	Count       int      `json:"count"`
	MaxModelLen int      `json:"max_model_len"`
	Tokens      []int    `json:"tokens"`
	TokenStrs   []string `json:"token_strs"`
}

// generationPrompt is what RenderChat appends to open the answer.
const generationPrompt = "<|im_start|>assistant\n"

// handleTokenize serves POST /tokenize with the simulated model's
// tokenizer: the count is the prompt_tokens a generation would report.
func (s *server) handleTokenize(w http.ResponseWriter, r *http.Request) {
	body, e := readBody(w, r)
	var req tokenizeRequest
	if e == nil {
		e = validate.Decode(body, &req)
	}
	if e == nil {
		e = validate.CheckModel(req.Model, s.limits())
	}
	var text string
	switch {
	case e != nil:
	case req.Messages != nil && req.Prompt == nil:
		text, e = validate.RenderMessages(req.Messages)
		if req.AddGenerationPrompt != nil && !*req.AddGenerationPrompt {
			text = strings.TrimSuffix(text, generationPrompt)
		}
	case req.Prompt != nil && req.Messages == nil:
		text = *req.Prompt
	default:
		e = errorf(http.StatusBadRequest, "Give exactly one of 'prompt' or 'messages'.")
	}
	if e != nil {
		openai.WriteErrorBody(w, *e)
		return
	}
	out := tokenizeResponse{Tokens: tokenizer.Encode(text), MaxModelLen: s.maxModelLen}
	out.Count = len(out.Tokens)
	if req.ReturnTokenStrs {
		out.TokenStrs = tokenizer.Pieces(text)
	}
	writeJSON(w, http.StatusOK, out)
}

// detokenizeRequest is POST /detokenize.
type detokenizeRequest struct {
	Model  string `json:"model"`
	Tokens []int  `json:"tokens"`
}

// handleDetokenize serves POST /detokenize: {"prompt": text}. Ids of
// bytes and of the words the simulated model writes decode exactly (so any
// output detokenizes to its text); see tokenizer.Text for the others.
func (s *server) handleDetokenize(w http.ResponseWriter, r *http.Request) {
	body, e := readBody(w, r)
	var req detokenizeRequest
	if e == nil {
		e = validate.Decode(body, &req)
	}
	if e == nil {
		e = validate.CheckModel(req.Model, s.limits())
	}
	if e == nil {
		e = validate.CheckIDs(req.Tokens, s.limits())
	}
	if e != nil {
		openai.WriteErrorBody(w, *e)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"prompt": tokenizer.Decode(req.Tokens)})
}

// requireKey wraps h with `vllm serve --api-key`'s check
// (vllm/entrypoints/openai/api_server.py, AuthenticationMiddleware, 0.10–
// 0.11): paths under /v1 need "Authorization: Bearer <key>" matching one
// of keys (compared as SHA-256 digests in constant time); CORS preflights
// and every other path (/health, /metrics, /tokenize, …) pass; a refusal
// is 401 with vLLM's body {"error":"Unauthorized"}.
func requireKey(keys []string, h http.Handler) http.Handler {
	if len(keys) == 0 {
		return h
	}
	digests := make([][32]byte, len(keys))
	for i, k := range keys {
		digests[i] = sha256.Sum256([]byte(k))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions || !strings.HasPrefix(r.URL.Path, "/v1") {
			h.ServeHTTP(w, r)
			return
		}
		scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		got := sha256.Sum256([]byte(token))
		match := 0
		for _, d := range digests {
			match |= subtle.ConstantTimeCompare(got[:], d[:])
		}
		if !strings.EqualFold(scheme, "bearer") || match == 0 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"Unauthorized"}`))
			return
		}
		h.ServeHTTP(w, r)
	})
}
