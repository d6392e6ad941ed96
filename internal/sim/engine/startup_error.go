package engine

import (
	"errors"
	"strings"
)

// Why an engine refuses to start.
const (
	// ReasonConfig: the configuration is invalid (vLLM's config classes
	// refuse it before loading anything).
	ReasonConfig = "config"
	// ReasonOutOfMemory: the memory plan leaves no room for the KV cache
	// one max_model_len sequence needs (vLLM fails in its profiling run).
	ReasonOutOfMemory = "out_of_memory"
)

// StartupError is the error NewPlan returns when vLLM would not start with
// a configuration. Callers tell it apart with errors.As — the live server
// exits 1 with its message, the offline runner and the tuner record the
// point as not starting — instead of matching vLLM's wording, which is kept
// in Err only to be printed.
type StartupError struct {
	Reason string // ReasonConfig or ReasonOutOfMemory
	Err    error  // vLLM's message
}

func (e *StartupError) Error() string { return e.Err.Error() }
func (e *StartupError) Unwrap() error { return e.Err }

// ExceptionLine is the line vLLM prints on stderr for this failure: the
// message with its Python exception class (ValueError where the message
// carries none).
func (e *StartupError) ExceptionLine() string { return ExceptionLine(e.Err) }

// ExceptionLine is the line vLLM prints on stderr for a start-up failure
// err: its message, given the Python exception class ValueError where the
// message names none.
func ExceptionLine(err error) string {
	msg := err.Error()
	if !strings.Contains(msg, "Error: ") {
		msg = "ValueError: " + msg
	}
	return msg
}

// IsOutOfMemory reports whether err says the engine could not start for
// lack of GPU memory.
func IsOutOfMemory(err error) bool {
	var se *StartupError
	return errors.As(err, &se) && se.Reason == ReasonOutOfMemory
}

func configError(err error) error { return &StartupError{Reason: ReasonConfig, Err: err} }

func outOfMemory(err error) error { return &StartupError{Reason: ReasonOutOfMemory, Err: err} }
