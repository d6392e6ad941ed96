package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/llmlab/llmlab/internal/admission"
	"github.com/llmlab/llmlab/internal/openai"
	"github.com/llmlab/llmlab/internal/queue"
	"github.com/llmlab/llmlab/internal/supervisor"
)

// The request path's stages (decode → validate → admit → upstream) return
// errors as values; respond is the one place that turns an error into a
// status, a reason (llmlab_errors_total, X-LLMLab-Reason), a body and a
// Retry-After. Only the relay, once the answer's status is on the wire,
// reports failures itself (an error event mid-stream).

// reasonHeader tells a client why its request was refused or degraded
// without parsing the body.
const reasonHeader = "X-LLMLab-Reason"

// requestError is a failure whose answer the stage that found it knows
// (bad input, a body too large, the worker's own refusal).
type requestError struct {
	status int
	reason string
	msg    string
	// body, when set, is sent as is (a validation refusal in the worker's
	// own words and shape).
	body *openai.ErrorResponse
	// closeConn asks net/http to close the connection after the answer
	// (a body that never arrived leaves the stream in an unknown state).
	closeConn bool
}

func (e *requestError) Error() string { return e.msg }

func badRequest(status int, reason, format string, args ...any) error {
	return &requestError{status: status, reason: reason, msg: fmt.Sprintf(format, args...)}
}

// stageError names where an admission or upstream error happened, for
// the message; the cause decides the status.
type stageError struct {
	stage string
	err   error
}

func (e *stageError) Error() string { return e.stage + ": " + e.err.Error() }
func (e *stageError) Unwrap() error { return e.err }

// upstreamError is a worker request that failed before any answer.
type upstreamError struct{ err error }

func (e *upstreamError) Error() string { return "worker request failed: " + e.err.Error() }
func (e *upstreamError) Unwrap() error { return e.err }

var (
	errColdStartTimeout = errors.New("cold start timeout")
	// errShutdown is the cause that ends requests still running when the
	// shutdown grace has passed.
	errShutdown = errors.New("gateway is shutting down")
)

// shutdownRetryAfter is the Retry-After of requests cut by a shutdown: a
// restarted gateway (or another replica) can take them at once.
const shutdownRetryAfter = 1

// answer is how an error is written.
type answer struct {
	status     int
	reason     string
	msg        string
	retryAfter int // whole seconds; 0: no header
	body       *openai.ErrorResponse
	closeConn  bool
}

// classify maps err to its answer. Every status a refused or failed
// request gets is decided here.
func (s *Server) classify(r *http.Request, err error) answer {
	var (
		re  *requestError
		rej *admission.Rejection
		ue  *supervisor.UnavailableError
		se  *stageError
		up  *upstreamError
	)
	stage := "request"
	if errors.As(err, &se) {
		stage = se.stage
	}
	switch {
	case errors.As(err, &re):
		return answer{status: re.status, reason: re.reason, msg: re.msg, body: re.body, closeConn: re.closeConn}
	case errors.As(err, &rej):
		// Load, not failure: 429 with the policy's reason and a
		// Retry-After from the measured drain rate.
		return answer{status: http.StatusTooManyRequests, reason: rej.Reason, msg: rej.Error(), retryAfter: s.retryAfter()}
	case errors.Is(err, queue.ErrFull):
		depth, in := s.disp.Stats()
		return answer{status: http.StatusTooManyRequests, reason: admission.ReasonQueueFull, retryAfter: s.retryAfter(),
			msg: fmt.Sprintf("queue full (%d waiting, %d in flight); retry later", depth, in)}
	case errors.Is(context.Cause(r.Context()), errShutdown) || errors.Is(err, errShutdown):
		return answer{status: http.StatusServiceUnavailable, reason: "shutting_down", retryAfter: shutdownRetryAfter,
			msg: fmt.Sprintf("gateway is shutting down; the request did not finish within the shutdown grace (%s)", stage)}
	case clientGone(r):
		// The client left; nobody reads an answer. 499 as nginx counts it.
		return answer{status: 499, reason: "client_disconnect"}
	case errors.Is(err, errColdStartTimeout):
		return answer{status: http.StatusGatewayTimeout, reason: "cold_start_timeout",
			msg: fmt.Sprintf("no ready worker within cold_start_timeout %s (%s; worker %s)", s.set.ColdStartTimeout, stage, s.sup.State())}
	case errors.As(err, &ue):
		// At least a second: a start that failed while the request was
		// held is retried at once by the next request, but not sooner
		// than a start can fail again.
		return answer{status: http.StatusServiceUnavailable, reason: "worker_unavailable", msg: ue.Error(),
			retryAfter: max(1, int((ue.RetryAfter+time.Second-1)/time.Second))}
	case errors.Is(err, supervisor.ErrClosed):
		return answer{status: http.StatusServiceUnavailable, reason: "shutting_down", msg: "gateway is shutting down", retryAfter: shutdownRetryAfter}
	case errors.As(err, &up):
		return answer{status: http.StatusBadGateway, reason: "upstream_error", msg: up.Error()}
	default:
		return answer{status: http.StatusServiceUnavailable, reason: "worker_unavailable", msg: err.Error(), retryAfter: 1}
	}
}

// respond writes err's answer and counts it by reason.
func (s *Server) respond(w http.ResponseWriter, r *http.Request, err error) {
	a := s.classify(r, err)
	s.metrics.Errors.WithLabelValues(a.reason, strconv.Itoa(a.status)).Inc()
	if a.status == http.StatusTooManyRequests {
		s.ctl.rejected.WithLabelValues(a.reason).Inc()
	}
	h := w.Header()
	if a.closeConn {
		h.Set("Connection", "close")
	}
	if a.status == 499 {
		w.WriteHeader(499)
		return
	}
	if a.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(a.retryAfter))
	}
	h.Set(reasonHeader, a.reason)
	if a.body != nil {
		openai.WriteErrorBody(w, *a.body)
		return
	}
	openai.WriteErrorBody(w, openai.NewError(a.status, a.msg))
}

// fail writes an OpenAI-shaped error for the routes outside the request
// path (unknown route, admin) and counts it by reason.
func (s *Server) fail(w http.ResponseWriter, status int, reason, format string, args ...any) {
	s.metrics.Errors.WithLabelValues(reason, strconv.Itoa(status)).Inc()
	openai.WriteError(w, status, format, args...)
}
