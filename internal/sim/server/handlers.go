package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/llmlab/llmlab/internal/openai"
	"github.com/llmlab/llmlab/internal/validate"
)

// handler routes the API. Routing is by exact path, then method, so that an
// unknown path gets a 404 and a known path with the wrong method a 405, both
// as OpenAI-shaped JSON.
func (s *server) handler() http.Handler {
	routes := map[string]map[string]http.HandlerFunc{
		"/v1/completions":      {http.MethodPost: s.handleGenerate(parseCompletion)},
		"/v1/chat/completions": {http.MethodPost: s.handleGenerate(parseChat)},
		"/v1/models":           {http.MethodGet: s.handleModels},
		"/health":              {http.MethodGet: s.handleHealth},
		"/metrics":             {http.MethodGet: s.m.handler().ServeHTTP},
		"/version":             {http.MethodGet: s.handleVersion},
		// vLLM answers /ping like /health, on GET and POST (SageMaker's probe).
		"/ping":       {http.MethodGet: s.handleHealth, http.MethodPost: s.handleHealth},
		"/tokenize":   {http.MethodPost: s.handleTokenize},
		"/detokenize": {http.MethodPost: s.handleDetokenize},
	}
	return requireKey(s.cfg.APIKeys, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		methods, ok := routes[r.URL.Path]
		if !ok {
			openai.WriteError(w, http.StatusNotFound, "Not Found: %s %s", r.Method, r.URL.Path)
			return
		}
		h, ok := methods[r.Method]
		if !ok && r.Method == http.MethodHead {
			h, ok = methods[http.MethodGet]
		}
		if !ok {
			allow := make([]string, 0, len(methods))
			for m := range methods {
				allow = append(allow, m)
			}
			sort.Strings(allow)
			w.Header().Set("Allow", strings.Join(allow, ", "))
			openai.WriteError(w, http.StatusMethodNotAllowed, "Method Not Allowed: %s %s", r.Method, r.URL.Path)
			return
		}
		h(w, r)
	}))
}

// limits is what request validation checks against: the same values the
// gateway derives from the profile (internal/gateway/validate.go).
func (s *server) limits() validate.Limits {
	return validate.Limits{ServedName: s.cfg.ServedModelName, MaxModelLen: s.maxModelLen, Vocab: s.vocab, MaxN: 1}
}

func (s *server) handleHealth(w http.ResponseWriter, r *http.Request) {
	select {
	case <-s.loop.done:
		// The engine loop is gone: vLLM answers 503 when its engine died.
		w.WriteHeader(http.StatusServiceUnavailable)
	default:
		w.WriteHeader(http.StatusOK)
	}
}

func (s *server) handleVersion(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"version": vllmVersion})
}

func (s *server) handleModels(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, openai.ModelList{
		Object: openai.ObjectList,
		Data: []openai.Model{{
			ID: s.cfg.ServedModelName, Object: openai.ObjectModel, Created: s.created,
			OwnedBy: "vllm", Root: s.cfg.Model, MaxModelLen: s.maxModelLen,
		}},
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		openai.WriteError(w, http.StatusInternalServerError, "marshal response: %v", err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// readBody reads a request body of at most maxBodyBytes.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, *openai.ErrorResponse) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, errorf(http.StatusRequestEntityTooLarge, "Request body too large: the limit is %d bytes.", tooBig.Limit)
		}
		return nil, errorf(http.StatusBadRequest, "Read request body: %v", err)
	}
	return body, nil
}

// handleGenerate serves /v1/completions or /v1/chat/completions: the two
// differ only in how the body is parsed into a generation.
func (s *server) handleGenerate(parse func([]byte, validate.Limits) (genParams, *openai.ErrorResponse)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, e := readBody(w, r)
		if e == nil {
			var p genParams
			if p, e = parse(body, s.limits()); e == nil {
				s.generate(w, r, p)
				return
			}
		}
		openai.WriteErrorBody(w, *e)
	}
}

// generation is one request in flight in a handler.
type generation struct {
	p        genParams
	id       string
	created  int64
	textSeed uint64
	seq      *seq
	// texts holds each token's text when a stop string or stop token cut
	// the output (see applyStop); nil: appendText generates it.
	texts []string
	// stopReason is the JSON stop_reason: null, a stop string or an id.
	stopReason json.RawMessage
}

// generate submits the request to the engine loop and answers it, streamed
// or whole. If the client goes away first, the request is aborted in the
// engine (its KV blocks are freed at once).
func (s *server) generate(w http.ResponseWriter, r *http.Request, p genParams) {
	n := s.nextID.Add(1)
	prefix := "cmpl-"
	if p.Chat {
		prefix = "chatcmpl-"
	}
	now := time.Now()
	g := &generation{p: p, id: fmt.Sprintf("%s%s%016x", prefix, s.idBase, n), created: now.Unix()}
	var out int
	var reason string
	g.textSeed, out, reason = p.plan(s.cfg.Seed, n)
	out, reason = g.applyStop(out, reason)
	g.seq = newSeq(g.id, p.PromptTokens, out, p.MaxTokens, reason, now)
	g.seq.promptIDs = p.promptIDs
	if err := s.loop.submit(r.Context(), g.seq); err != nil {
		if errors.Is(err, errShutdown) {
			openai.WriteError(w, http.StatusServiceUnavailable, "The server is shutting down.")
		}
		return // the client is gone: nothing to answer
	}
	// Whatever ends this handler early (client gone, write error), the
	// engine must stop working on the request.
	defer s.loop.abort(g.seq)
	if p.Stream {
		s.stream(w, r, g)
		return
	}
	s.whole(w, r, g)
}

// wait blocks until the sequence has new tokens, has ended, the client is
// gone (false) or the loop has stopped.
func (s *server) wait(r *http.Request, sq *seq) bool {
	select {
	case <-sq.notify:
		return true
	case <-s.loop.done:
		return true
	case <-r.Context().Done():
		return false
	}
}

// abortMessage says why an aborted sequence ended.
func abortMessage(sq *seq) string {
	if sq.state.Load() == stateAborted && sq.errMsg != "" {
		return sq.errMsg
	}
	return errShutdownMsg
}

// progress reads how far the sequence is: tokens produced and whether it
// finished or was aborted. The state is read first: produced is stored
// before the state changes, so a finished state comes with the final count.
func (s *server) progress(sq *seq) (produced int, state int32) {
	state = sq.state.Load()
	produced = int(sq.produced.Load())
	if state == stateRunning {
		select {
		case <-s.loop.done:
			state = stateAborted
		default:
		}
	}
	return produced, state
}

func (s *server) usage(g *generation) *openai.Usage {
	return &openai.Usage{
		PromptTokens:     g.p.PromptTokens,
		CompletionTokens: g.seq.outputTokens,
		TotalTokens:      g.p.PromptTokens + g.seq.outputTokens,
	}
}

// whole answers a non-streamed request once all its tokens are out.
func (s *server) whole(w http.ResponseWriter, r *http.Request, g *generation) {
	for {
		if !s.wait(r, g.seq) {
			return
		}
		_, state := s.progress(g.seq)
		if state == stateAborted {
			openai.WriteErrorBody(w, openai.NewError(http.StatusServiceUnavailable, abortMessage(g.seq)))
			return
		}
		if state == stateFinished {
			break
		}
	}
	text := string(g.appendText(nil, 0, g.seq.outputTokens))
	reason := g.seq.finishReason
	if g.p.Chat {
		writeJSON(w, http.StatusOK, openai.ChatCompletionResponse{
			ID: g.id, Object: openai.ObjectChatCompletion, Created: g.created, Model: g.p.Model,
			Choices: []openai.ChatChoice{{
				Message:      openai.ChatOutMessage{Role: "assistant", Content: text},
				Logprobs:     g.logprobs(0, g.seq.outputTokens, 0),
				FinishReason: &reason, StopReason: g.stopReason,
			}},
			Usage: s.usage(g),
		})
		return
	}
	writeJSON(w, http.StatusOK, openai.CompletionResponse{
		ID: g.id, Object: openai.ObjectTextCompletion, Created: g.created, Model: g.p.Model,
		Choices: []openai.CompletionChoice{{
			Text: text, Logprobs: g.logprobs(0, g.seq.outputTokens, 0), FinishReason: &reason, StopReason: g.stopReason,
		}},
		Usage: s.usage(g),
	})
}

// appendText appends the text of output tokens [from, to) to dst. A chat
// answer does not start with the space that continues a completion prompt.
func (g *generation) appendText(dst []byte, from, to int) []byte {
	if g.texts != nil {
		for k := from; k < to; k++ {
			dst = append(dst, g.texts[k]...)
		}
		return dst
	}
	for k := from; k < to; k++ {
		start := len(dst)
		dst = appendToken(dst, g.textSeed, k)
		if k == 0 && g.p.Chat {
			dst = append(dst[:start], dst[start+1:]...)
		}
	}
	return dst
}

// stream answers a streamed request: one event per token, written as the
// engine produces them. All events that are ready at a wake-up go out in one
// write and one flush.
func (s *server) stream(w http.ResponseWriter, r *http.Request, g *generation) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	// Send the headers now, as vLLM does, so clients see the response begin
	// before the first token.
	if err := rc.Flush(); err != nil {
		return
	}
	enc := newChunkEncoder(g)
	var buf []byte
	sent := 0
	for {
		if !s.wait(r, g.seq) {
			return
		}
		produced, state := s.progress(g.seq)
		buf = buf[:0]
		for ; sent < produced; sent++ {
			buf = enc.appendToken(buf, sent)
		}
		switch state {
		case stateAborted:
			buf = appendEvent(buf, mustJSON(openai.NewError(http.StatusServiceUnavailable, abortMessage(g.seq))))
			buf = appendEvent(buf, []byte(openai.Done))
		case stateFinished:
			if g.p.IncludeUsage {
				buf = appendEvent(buf, enc.usageChunk(s.usage(g)))
			}
			buf = appendEvent(buf, []byte(openai.Done))
		}
		if len(buf) > 0 {
			if _, err := w.Write(buf); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
		if state != stateRunning {
			return
		}
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own wire types reach here; they always marshal.
		panic(fmt.Sprintf("marshal %T: %v", v, err))
	}
	return b
}
