package gateway

import (
	"net/http"
	"strings"

	"github.com/llmlab/llmlab/internal/profile"
	"github.com/llmlab/llmlab/internal/sim/engine"
	"github.com/llmlab/llmlab/internal/validate"
)

// Requests are validated here, before admission and before any worker
// start, with the same package and limits the simulated worker uses: a
// request the worker would refuse is refused with the worker's status and
// message, and a stopped worker stays stopped (issue 11 §3).

// validationLimits derives the worker's limits from the profile:
// max_model_len from its engine arguments, the vocabulary from its model
// spec. Against a real vLLM (or an external worker) text prompts are left
// to the worker's own tokenizer, n is not capped, and the vocabulary is
// known only when the model is one of the modelled ones.
func validationLimits(p profile.Profile) validate.Limits {
	lim := validate.Limits{ServedName: p.ModelName(), MaxModelLen: p.EngineArgs.MaxModelLen}
	if spec, ok := modelSpec(p); ok {
		lim.Vocab = spec.Vocab
	}
	if p.Engine == profile.EngineSim {
		lim.MaxN = 1 // the simulated engine serves n = 1 only
	} else {
		lim.SkipTextLength = true
	}
	return lim
}

// modelSpec finds the modelled architecture of the profile's model: the
// sim section's model_spec, else the spec whose Hugging Face name is the
// model (as `llmlab sim` picks it), else, for the sim engine, the default.
func modelSpec(p profile.Profile) (engine.ModelSpec, bool) {
	if p.Sim.ModelSpec != "" {
		s, err := engine.LookupModel(p.Sim.ModelSpec)
		return s, err == nil
	}
	norm := func(s string) string { return strings.TrimSuffix(strings.ToLower(s), "-instruct") }
	for _, name := range engine.ModelNames() {
		s, err := engine.LookupModel(name)
		if err == nil && norm(s.HFName) == norm(p.Model) {
			return s, true
		}
	}
	if p.Engine == profile.EngineSim {
		s, err := engine.LookupModel(engine.DefaultModelSpec)
		return s, err == nil
	}
	return engine.ModelSpec{}, false
}

// checker is a validation function of internal/validate.
type checker func([]byte, validate.Limits) (validate.Request, *validate.Error)

// validateBody is the validate stage: a refusal carries the worker's own
// status and message.
func (s *Server) validateBody(body []byte, check checker) (validate.Request, error) {
	req, e := check(body, s.limits)
	if e == nil {
		return req, nil
	}
	reason := "bad_request" // as the gateway's own decode errors
	if e.Error.Code == http.StatusNotFound {
		reason = "unknown_model"
	}
	return req, &requestError{status: e.Error.Code, reason: reason, msg: e.Error.Message, body: e}
}
