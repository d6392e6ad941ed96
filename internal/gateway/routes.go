package gateway

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/llmlab/llmlab/internal/openai"
	"github.com/llmlab/llmlab/internal/profile"
	"github.com/llmlab/llmlab/internal/queue"
	"github.com/llmlab/llmlab/internal/supervisor"
	"github.com/llmlab/llmlab/internal/validate"
)

// route is one endpoint: the method it accepts and its handler.
type route struct {
	method string
	h      http.HandlerFunc
}

// routes builds the router by hand rather than with ServeMux patterns,
// because ServeMux answers unknown paths and wrong methods in plain text
// and every error here must be OpenAI-shaped JSON.
func (s *Server) routes() http.Handler {
	table := map[string]route{
		"/v1/completions":      {http.MethodPost, s.handleCompletions},
		"/v1/chat/completions": {http.MethodPost, s.handleChat},
		"/v1/models":           {http.MethodGet, s.handleModels},
		"/generate":            {http.MethodPost, s.handleGenerate},
		"/health":              {http.MethodGet, s.handleHealth},
		"/ready":               {http.MethodGet, s.handleReady},
		"/status":              {http.MethodGet, s.handleStatus},
		"/metrics":             {http.MethodGet, s.metrics.Handler().ServeHTTP},
		"/admin/worker/start":  {http.MethodPost, s.handleAdminStart},
		"/admin/worker/stop":   {http.MethodPost, s.handleAdminStop},
		"/":                    {http.MethodGet, s.handleStatusPage},
		"/version":             {http.MethodGet, s.handleVersion},
	}
	s.addPprof(table) // opt-in profiling under /admin/ (pprof.go)
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
		s.metrics.Requests.WithLabelValues(name, strconv.Itoa(code)).Inc()
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

// fail writes an OpenAI-shaped error and counts it by reason.
func (s *Server) fail(w http.ResponseWriter, status int, reason, format string, args ...any) {
	s.metrics.Errors.WithLabelValues(reason, strconv.Itoa(status)).Inc()
	openai.WriteError(w, status, format, args...)
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
	IdleTimeoutSeconds float64 `json:"idle_timeout_seconds"`
	UptimeSeconds      float64 `json:"uptime_seconds"`
	statusExtras
}

func (s *Server) status() statusBody {
	var b statusBody
	b.Profile.Name, b.Profile.Engine, b.Profile.Model = s.prof.Name, s.prof.Engine, s.prof.Model
	b.Profile.ServedModelName, b.Profile.EngineArgs = s.prof.ModelName(), s.prof.EngineArgs
	b.Worker = s.sup.Status()
	b.Queue.Depth, b.Queue.InFlight = s.disp.Stats()
	b.Queue.Max, b.Queue.MaxInFlight = s.disp.QueueCap(), s.disp.MaxInFlight()
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

// readBody reads the request body within the size limit, writing the
// error itself when it fails.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.Contains(ct, "json") && !strings.HasPrefix(ct, "text/plain") {
		// curl -d sends form encoding by default; accept it only if the
		// body is JSON anyway (checked by the caller's decode).
		if !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
			s.fail(w, http.StatusUnsupportedMediaType, "bad_request", "Content-Type %q is not supported; send application/json", ct)
			return nil, false
		}
	}
	body, err := readAll(http.MaxBytesReader(w, r.Body, s.set.MaxBodyBytes), r.ContentLength)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.fail(w, http.StatusRequestEntityTooLarge, "body_too_large", "request body is larger than %d bytes", s.set.MaxBodyBytes)
			return nil, false
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			w.Header().Set("Connection", "close")
			s.fail(w, http.StatusRequestTimeout, "body_timeout", "request body not received within body_read_timeout %s", s.set.BodyReadTimeout)
			return nil, false
		}
		s.fail(w, http.StatusBadRequest, "bad_request", "reading request body: %v", err)
		return nil, false
	}
	if len(body) == 0 {
		s.fail(w, http.StatusBadRequest, "bad_request", "request body is empty; send a JSON object")
		return nil, false
	}
	return body, true
}

func (s *Server) badJSON(w http.ResponseWriter, err error) {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		s.fail(w, http.StatusBadRequest, "bad_request", "malformed JSON at byte %d: %v", se.Offset, err)
	case errors.As(err, &te):
		s.fail(w, http.StatusBadRequest, "bad_request", "field %q: expected %s, got JSON %s", te.Field, te.Type, te.Value)
	default:
		s.fail(w, http.StatusBadRequest, "bad_request", "invalid request body: %v", err)
	}
}

func (s *Server) handleCompletions(w http.ResponseWriter, r *http.Request) {
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	req, ok := s.validated(w, body, validate.Completion)
	if !ok {
		return
	}
	s.forward(w, r, "/v1/completions", body, req.Stream)
}

func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) {
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	req, ok := s.validated(w, body, validate.Chat)
	if !ok {
		return
	}
	s.forward(w, r, "/v1/chat/completions", body, req.Stream)
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
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	var g generateRequest
	if err := json.Unmarshal(body, &g); err != nil {
		s.badJSON(w, err)
		return
	}
	switch {
	case g.Prompt == nil || *g.Prompt == "":
		s.fail(w, http.StatusBadRequest, "bad_request", "prompt is required and must be a non-empty string")
		return
	case g.MaxNewTokens == nil || *g.MaxNewTokens < 1:
		s.fail(w, http.StatusBadRequest, "bad_request", "max_new_tokens is required and must be >= 1")
		return
	case g.Temperature != nil && (*g.Temperature < 0 || *g.Temperature > 2):
		s.fail(w, http.StatusBadRequest, "bad_request", "temperature must be in [0, 2]")
		return
	}
	up, err := json.Marshal(openai.CompletionRequest{
		Model: s.prof.ModelName(), Prompt: openai.Prompt{Text: *g.Prompt, Count: 1},
		MaxTokens: g.MaxNewTokens, Temperature: g.Temperature,
	})
	if err != nil {
		s.fail(w, http.StatusInternalServerError, "internal", "encode upstream request: %v", err)
		return
	}
	if _, ok := s.validated(w, up, validate.Completion); !ok {
		return
	}
	r, end := s.withAbort(r)
	defer end()
	a, ok := s.admit(w, r, "/generate")
	if !ok {
		return
	}
	defer a.done()
	tw := time.Now()
	resp, ok := s.send(w, r, a, "/v1/completions", up)
	if !ok {
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		s.relayPlain(w, resp, "/generate")
		return
	}
	var cr openai.CompletionResponse
	if err := json.NewDecoder(resp.Body).Decode(&cr); err != nil {
		s.fail(w, http.StatusBadGateway, "upstream_error", "decode worker response: %v", err)
		return
	}
	out := generateResponse{Model: cr.Model, Usage: cr.Usage}
	if len(cr.Choices) > 0 {
		out.Text = cr.Choices[0].Text
		if cr.Choices[0].FinishReason != nil {
			out.FinishReason = *cr.Choices[0].FinishReason
		}
	}
	out.Timings = generateTimings{
		QueueSeconds: a.queued.Seconds(), ColdSeconds: a.held.Seconds(),
		WorkerSeconds: time.Since(tw).Seconds(), TotalSeconds: time.Since(t0).Seconds(),
	}
	writeJSON(w, http.StatusOK, out)
}

// admission errors are mapped in one place so every route answers alike.
func (s *Server) admitError(w http.ResponseWriter, r *http.Request, err error, stage string) {
	var ue *supervisor.UnavailableError
	switch {
	case errors.Is(err, queue.ErrFull):
		s.metrics.Errors.WithLabelValues("queue_full", "429").Inc()
		openai.WriteRetryAfter(w, s.queueFullRetryAfter(), "queue full (%d waiting, %d in flight); retry later", s.disp.QueueCap(), s.disp.MaxInFlight())
	case errors.Is(err, errShutdown):
		w.Header().Set("Retry-After", shutdownRetryAfter)
		s.fail(w, http.StatusServiceUnavailable, "shutting_down", "gateway is shutting down; no ready worker within the shutdown grace (%s)", stage)
	case clientGone(r):
		// The client left; nobody reads an answer. 499 as nginx counts it.
		s.metrics.Errors.WithLabelValues("client_disconnect", "499").Inc()
		w.WriteHeader(499)
	case errors.Is(err, errColdStartTimeout):
		s.fail(w, http.StatusGatewayTimeout, "cold_start_timeout", "no ready worker within cold_start_timeout %s (%s; worker %s)", s.set.ColdStartTimeout, stage, s.sup.State())
	case errors.As(err, &ue):
		// At least a second: a start that failed while the request was
		// held is retried at once by the next request, but not sooner
		// than a start can fail again.
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int((ue.RetryAfter+time.Second-1)/time.Second))))
		s.fail(w, http.StatusServiceUnavailable, "worker_unavailable", "%v", err)
	case errors.Is(err, supervisor.ErrClosed):
		w.Header().Set("Retry-After", shutdownRetryAfter)
		s.fail(w, http.StatusServiceUnavailable, "shutting_down", "gateway is shutting down")
	default:
		w.Header().Set("Retry-After", "1")
		s.fail(w, http.StatusServiceUnavailable, "worker_unavailable", "%v", err)
	}
}

// queueFullRetryAfter is the Retry-After of a 429. While the worker starts
// nothing leaves the queue, so a retry before the start-up is expected to
// end (the last cold start's duration) would only be refused again;
// otherwise places free up as requests finish, and a second is a fair wait.
func (s *Server) queueFullRetryAfter() time.Duration {
	st := s.sup.Status()
	if st.State != supervisor.Starting.String() || st.LastColdStartSeconds <= 0 {
		return time.Second
	}
	left := time.Duration(st.LastColdStartSeconds*float64(time.Second)) - time.Since(st.Since)
	return max(time.Second, left)
}
