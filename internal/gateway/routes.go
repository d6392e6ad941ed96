package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/llmlab/llmlab/internal/admission"
	"github.com/llmlab/llmlab/internal/openai"
	"github.com/llmlab/llmlab/internal/profile"
	"github.com/llmlab/llmlab/internal/supervisor"
	"github.com/llmlab/llmlab/internal/validate"
	"github.com/prometheus/client_golang/prometheus"
)

// route is one endpoint: the method it accepts and its handler.
type route struct {
	method string
	h      http.HandlerFunc
	// ok is the request counter's series for a 200 on this route, looked
	// up once: a label lookup per request hashes both labels again.
	ok prometheus.Counter
}

// routes builds the router by hand rather than with ServeMux patterns,
// because ServeMux answers unknown paths and wrong methods in plain text
// and every error here must be OpenAI-shaped JSON.
func (s *Server) routes() http.Handler {
	table := map[string]route{
		"/v1/completions":      {method: http.MethodPost, h: s.handleCompletions},
		"/v1/chat/completions": {method: http.MethodPost, h: s.handleChat},
		"/v1/models":           {method: http.MethodGet, h: s.handleModels},
		"/generate":            {method: http.MethodPost, h: s.handleGenerate},
		"/health":              {method: http.MethodGet, h: s.handleHealth},
		"/ready":               {method: http.MethodGet, h: s.handleReady},
		"/status":              {method: http.MethodGet, h: s.handleStatus},
		"/metrics":             {method: http.MethodGet, h: s.metrics.Handler().ServeHTTP},
		"/admin/worker/start":  {method: http.MethodPost, h: s.handleAdminStart},
		"/admin/worker/stop":   {method: http.MethodPost, h: s.handleAdminStop},
		"/admin/degrade":       {method: http.MethodPost, h: s.handleAdminDegrade},
		"/":                    {method: http.MethodGet, h: s.handleStatusPage},
		"/version":             {method: http.MethodGet, h: s.handleVersion},
	}
	s.addPprof(table) // opt-in profiling under /admin/ (pprof.go)
	for name, rt := range table {
		rt.ok = s.metrics.Requests.WithLabelValues(name, "200")
		table[name] = rt
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rt, ok := table[r.URL.Path]
		name := r.URL.Path
		if !ok {
			name = "other" // bound the label's cardinality
		}
		rec := &recorder{ResponseWriter: w}
		switch {
		case !ok:
			s.fail(rec, http.StatusNotFound, "not_found", "unknown route %s %s", r.Method, r.URL.Path)
		case r.Method != rt.method && !(rt.method == http.MethodGet && r.Method == http.MethodHead):
			rec.Header().Set("Allow", rt.method)
			s.fail(rec, http.StatusMethodNotAllowed, "method_not_allowed", "method %s not allowed on %s; use %s", r.Method, r.URL.Path, rt.method)
		default:
			rt.h(rec, r)
		}
		code := rec.status
		if code == 0 {
			code = http.StatusOK
		}
		if code == http.StatusOK && ok {
			rt.ok.Inc()
		} else {
			s.metrics.Requests.WithLabelValues(name, strconv.Itoa(code)).Inc()
		}
		s.observe(name, code, start)
	})
}

// recorder remembers the status code. Unwrap lets http.ResponseController
// reach the real writer's Flush, so streams still stream.
type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// ReadFrom keeps io.Copy on net/http's pooled buffers instead of a fresh
// 32 KiB buffer per proxied body.
func (r *recorder) ReadFrom(src io.Reader) (int64, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if rf, ok := r.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(r.ResponseWriter, src)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	// The gateway is alive; the worker's state is on /status.
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "worker": s.sup.State().String()})
}

func (s *Server) handleModels(w http.ResponseWriter, r *http.Request) {
	// Answered from the profile so listing models never wakes the worker.
	writeJSON(w, http.StatusOK, openai.ModelList{Object: openai.ObjectList, Data: []openai.Model{{
		ID: s.prof.ModelName(), Object: openai.ObjectModel, Created: s.started.Unix(),
		OwnedBy: "llmlab", Root: s.prof.Model, MaxModelLen: s.prof.EngineArgs.MaxModelLen,
	}}})
}

// statusBody is GET /status.
type statusBody struct {
	Profile struct {
		Name            string             `json:"name"`
		Engine          string             `json:"engine"`
		Model           string             `json:"model"`
		ServedModelName string             `json:"served_model_name"`
		EngineArgs      profile.EngineArgs `json:"engine_args"`
	} `json:"profile"`
	Worker supervisor.Status `json:"worker"`
	Queue  struct {
		Depth       int `json:"depth"`
		Max         int `json:"max"`
		InFlight    int `json:"in_flight"`
		MaxInFlight int `json:"max_in_flight"`
	} `json:"queue"`
	Overload           overloadStatus `json:"overload"`
	IdleTimeoutSeconds float64        `json:"idle_timeout_seconds"`
	UptimeSeconds      float64        `json:"uptime_seconds"`
	statusExtras
}

func (s *Server) status() statusBody {
	var b statusBody
	b.Profile.Name, b.Profile.Engine, b.Profile.Model = s.prof.Name, s.prof.Engine, s.prof.Model
	b.Profile.ServedModelName, b.Profile.EngineArgs = s.prof.ModelName(), s.prof.EngineArgs
	b.Worker = s.sup.Status()
	b.Queue.Depth, b.Queue.InFlight = s.disp.Stats()
	b.Queue.Max, b.Queue.MaxInFlight = s.disp.QueueCap(), s.disp.MaxInFlight()
	b.Overload = s.ctl.status()
	b.IdleTimeoutSeconds = s.set.IdleTimeout.Seconds()
	b.UptimeSeconds = time.Since(s.started).Seconds()
	b.statusExtras = s.extras()
	return b
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	b := s.status()
	if !s.detailOK(r) {
		redactStatus(&b)
	}
	writeJSON(w, http.StatusOK, b)
}

func (s *Server) handleAdminStart(w http.ResponseWriter, r *http.Request) {
	if err := s.sup.Start(); err != nil {
		s.fail(w, http.StatusServiceUnavailable, "shutting_down", "%v", err)
		return
	}
	writeJSON(w, http.StatusAccepted, s.status())
}

func (s *Server) handleAdminStop(w http.ResponseWriter, r *http.Request) {
	if err := s.sup.Stop(r.Context(), "admin stop"); err != nil {
		s.fail(w, http.StatusServiceUnavailable, "stop_failed", "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, s.status())
}

// handleAdminDegrade sets the degradation tier by hand (?tier=0..4): an
// operator's order, logged and applied like the ladder's own changes
// (which go on from there when the ladder is on).
func (s *Server) handleAdminDegrade(w http.ResponseWriter, r *http.Request) {
	t, err := strconv.Atoi(r.URL.Query().Get("tier"))
	if err != nil || t < 0 || t > int(admission.MaxTier) {
		s.fail(w, http.StatusBadRequest, "bad_request", "tier must be an integer in [0, %d], got %q", int(admission.MaxTier), r.URL.Query().Get("tier"))
		return
	}
	s.ctl.setTier(admission.Tier(t))
	writeJSON(w, http.StatusOK, s.status())
}

// decode is the first stage: the request body within the size and time
// limits.
func (s *Server) decode(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.Contains(ct, "json") && !strings.HasPrefix(ct, "text/plain") {
		// curl -d sends form encoding by default; accept it only if the
		// body is JSON anyway (checked by the caller's decode).
		if !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
			return nil, badRequest(http.StatusUnsupportedMediaType, "bad_request", "Content-Type %q is not supported; send application/json", ct)
		}
	}
	body, err := readAll(http.MaxBytesReader(w, r.Body, s.set.MaxBodyBytes), r.ContentLength)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, badRequest(http.StatusRequestEntityTooLarge, "body_too_large", "request body is larger than %d bytes", s.set.MaxBodyBytes)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, &requestError{status: http.StatusRequestTimeout, reason: "body_timeout", closeConn: true,
				msg: fmt.Sprintf("request body not received within body_read_timeout %s", s.set.BodyReadTimeout)}
		}
		return nil, badRequest(http.StatusBadRequest, "bad_request", "reading request body: %v", err)
	}
	if len(body) == 0 {
		return nil, badRequest(http.StatusBadRequest, "bad_request", "request body is empty; send a JSON object")
	}
	return body, nil
}

// jsonError explains a body that does not decode.
func jsonError(err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return badRequest(http.StatusBadRequest, "bad_request", "malformed JSON at byte %d: %v", se.Offset, err)
	case errors.As(err, &te):
		return badRequest(http.StatusBadRequest, "bad_request", "field %q: expected %s, got JSON %s", te.Field, te.Type, te.Value)
	}
	return badRequest(http.StatusBadRequest, "bad_request", "invalid request body: %v", err)
}

func (s *Server) handleCompletions(w http.ResponseWriter, r *http.Request) {
	s.serveOpenAI(w, r, "/v1/completions", validate.Completion)
}

func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) {
	s.serveOpenAI(w, r, "/v1/chat/completions", validate.Chat)
}

// serveOpenAI runs the stages of an OpenAI route: decode, validate, then
// forward (admit, upstream, relay).
func (s *Server) serveOpenAI(w http.ResponseWriter, r *http.Request, route string, check checker) {
	body, err := s.decode(w, r)
	if err != nil {
		s.respond(w, r, err)
		return
	}
	req, err := s.validateBody(body, check)
	if err != nil {
		s.respond(w, r, err)
		return
	}
	s.forward(w, r, route, body, req)
}

// generateRequest is POST /generate: a minimal interface for scripts.
type generateRequest struct {
	Prompt       *string  `json:"prompt"`
	MaxNewTokens *int     `json:"max_new_tokens"`
	Temperature  *float64 `json:"temperature,omitempty"`
}

// generateResponse is the answer of POST /generate.
type generateResponse struct {
	Text         string          `json:"text"`
	FinishReason string          `json:"finish_reason,omitempty"`
	Model        string          `json:"model"`
	Usage        *openai.Usage   `json:"usage"`
	Timings      generateTimings `json:"timings"`
}

// generateTimings split a request's time between the gateway and the worker.
type generateTimings struct {
	QueueSeconds  float64 `json:"queue_seconds"`           // waiting for a place
	ColdSeconds   float64 `json:"cold_start_wait_seconds"` // waiting for a READY worker
	WorkerSeconds float64 `json:"worker_seconds"`          // upstream request
	TotalSeconds  float64 `json:"total_seconds"`
}

func (s *Server) handleGenerate(w http.ResponseWriter, r *http.Request) {
	t0 := time.Now()
	out, err := s.generate(w, r, t0)
	if err != nil {
		s.respond(w, r, err)
		return
	}
	if out != nil {
		writeJSON(w, http.StatusOK, out)
	}
}

// generate runs /generate's stages. It returns the answer, or an error
// before anything was written, or (nil, nil) when it relayed the worker's
// own refusal.
func (s *Server) generate(w http.ResponseWriter, r *http.Request, t0 time.Time) (*generateResponse, error) {
	body, err := s.decode(w, r)
	if err != nil {
		return nil, err
	}
	var g generateRequest
	if err := json.Unmarshal(body, &g); err != nil {
		return nil, jsonError(err)
	}
	switch {
	case g.Prompt == nil || *g.Prompt == "":
		return nil, badRequest(http.StatusBadRequest, "bad_request", "prompt is required and must be a non-empty string")
	case g.MaxNewTokens == nil || *g.MaxNewTokens < 1:
		return nil, badRequest(http.StatusBadRequest, "bad_request", "max_new_tokens is required and must be >= 1")
	case g.Temperature != nil && (*g.Temperature < 0 || *g.Temperature > 2):
		return nil, badRequest(http.StatusBadRequest, "bad_request", "temperature must be in [0, 2]")
	}
	up, err := json.Marshal(openai.CompletionRequest{
		Model: s.prof.ModelName(), Prompt: openai.Prompt{Text: *g.Prompt, Count: 1},
		MaxTokens: g.MaxNewTokens, Temperature: g.Temperature,
	})
	if err != nil {
		return nil, badRequest(http.StatusInternalServerError, "internal", "encode upstream request: %v", err)
	}
	req, err := s.validateBody(up, validate.Completion)
	if err != nil {
		return nil, err
	}
	deadline, err := requestDeadline(r)
	if err != nil {
		return nil, err
	}
	p, err := s.admit(r, deadline)
	if err != nil {
		return nil, err
	}
	defer p.done()
	up = s.degrade(w, up, req)
	s.ctl.batch.join(r.Context())
	tw := time.Now()
	resp, err := s.send(r, p, "/v1/completions", up)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		s.relayPlain(w, resp, "/generate", &p.out)
		return nil, nil
	}
	var cr openai.CompletionResponse
	if err := json.NewDecoder(resp.Body).Decode(&cr); err != nil {
		return nil, &upstreamError{fmt.Errorf("decode worker response: %w", err)}
	}
	s.ctl.served(p, resp.StatusCode)
	out := &generateResponse{Model: cr.Model, Usage: cr.Usage}
	if len(cr.Choices) > 0 {
		out.Text = cr.Choices[0].Text
		if cr.Choices[0].FinishReason != nil {
			out.FinishReason = *cr.Choices[0].FinishReason
		}
	}
	out.Timings = generateTimings{
		QueueSeconds: p.queued.Seconds(), ColdSeconds: p.held.Seconds(),
		WorkerSeconds: time.Since(tw).Seconds(), TotalSeconds: time.Since(t0).Seconds(),
	}
	return out, nil
}
