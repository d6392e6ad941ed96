package openai

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// ErrorBody is the inner object of an OpenAI/vLLM error response.
type ErrorBody struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    int     `json:"code"`
}

// ErrorResponse is {"error":{...}}, the shape vLLM returns for every error and
// sends as a data event when a stream fails after it began.
type ErrorResponse struct {
	Error ErrorBody `json:"error"`
}

// Error types, as vLLM names them.
const (
	TypeBadRequest         = "BadRequestError"
	TypeNotFound           = "NotFoundError"
	TypeRateLimit          = "RateLimitError"
	TypeServiceUnavailable = "ServiceUnavailableError"
	TypeTimeout            = "TimeoutError"
	TypeInternal           = "InternalServerError"
	TypeRequestTooLarge    = "RequestEntityTooLargeError"
	TypeMethodNotAllowed   = "MethodNotAllowedError"
	TypeUnsupportedMedia   = "UnsupportedMediaTypeError"
	TypeBadGateway         = "BadGatewayError"
)

// TypeForStatus picks the error type name for an HTTP status.
func TypeForStatus(status int) string {
	switch status {
	case http.StatusBadRequest:
		return TypeBadRequest
	case http.StatusNotFound:
		return TypeNotFound
	case http.StatusMethodNotAllowed:
		return TypeMethodNotAllowed
	case http.StatusRequestEntityTooLarge:
		return TypeRequestTooLarge
	case http.StatusUnsupportedMediaType:
		return TypeUnsupportedMedia
	case http.StatusTooManyRequests:
		return TypeRateLimit
	case http.StatusBadGateway:
		return TypeBadGateway
	case http.StatusServiceUnavailable:
		return TypeServiceUnavailable
	case http.StatusGatewayTimeout:
		return TypeTimeout
	}
	if status >= 500 {
		return TypeInternal
	}
	return TypeBadRequest
}

// NewError builds an error body for status with the given message.
func NewError(status int, msg string) ErrorResponse {
	return ErrorResponse{Error: ErrorBody{Message: msg, Type: TypeForStatus(status), Code: status}}
}

// WriteError writes an OpenAI-shaped JSON error with the given status.
func WriteError(w http.ResponseWriter, status int, format string, args ...any) {
	WriteErrorBody(w, NewError(status, fmt.Sprintf(format, args...)))
}

// WriteErrorBody writes a prepared error body; its Code is the HTTP status.
func WriteErrorBody(w http.ResponseWriter, e ErrorResponse) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Error.Code)
	_ = json.NewEncoder(w).Encode(e)
}

// WriteRetryAfter writes a 429 with a Retry-After header rounded up to whole
// seconds (at least 1), as RFC 9110 requires an integer.
func WriteRetryAfter(w http.ResponseWriter, after time.Duration, format string, args ...any) {
	secs := int((after + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	WriteError(w, http.StatusTooManyRequests, format, args...)
}
