package engine

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// samplerBytesPerDecodeSeq is the memory traffic of sampling one token
// outside the lm_head GEMM (which the weight and FLOP terms already count):
// the bf16 logits are written and read (2+2) and the sampler's fp32 copy is
// written and read (4+4): 12 bytes per vocabulary entry.
const samplerBytesPerDecodeSeq = 12

// StepModel turns a step's shape into modelled time. Without a linear
// calibration it is a roofline with measured efficiencies and overheads:
//
//	time    = step_overhead + per_seq·decode_seqs + max(memory, compute)
//	memory  = (weights + Σcontext·kv_bytes_per_token + decode_seqs·vocab·12 B)
//	          / (bandwidth · bandwidth_efficiency)
//	compute = ((prefill_tokens + decode_seqs) · 2·(params − embedding)
//	           + decode_seqs · 2·vocab·hidden) / (fp16_tflops · compute_efficiency)
//
// The weights are streamed once per step whatever the batch; each KV entry
// attended to is read once; each scheduled token costs 2 FLOPs per
// parameter of the transformer body, and only sampled positions pay for the
// lm_head. The efficiencies are effective/nominal ratios measured on a
// card (a throttling laptop part reaches about half its spec sheet), and
// the per-step and per-sequence terms are the CPU and launch costs that
// make small batches slower than the roofline alone. Attention FLOPs are
// left out: the published quadratic prefill term (docs/calibration.md) is
// 0.4 ms for a 200-token prompt. With a linear calibration it is
// A + B·prefill + C·decode + D·Σcontext.
type StepModel struct {
	cal      *Calibration // linear form, when set
	overhead float64      // seconds per step
	perSeq   float64      // seconds per decode sequence per step
	weights  float64      // seconds to stream the weights
	perCtx   float64      // seconds per context token read
	perSeqM  float64      // seconds of memory traffic per decode seq (sampler)
	perTok   float64      // seconds of compute per scheduled token (body)
	perSeqC  float64      // seconds of lm_head compute per decode seq
	frontReq float64      // API-server seconds per request
	frontTok float64      // API-server seconds per streamed token
}

// NewStepModel builds the step-time model for cfg. cfg must be valid.
func NewStepModel(cfg Config) (StepModel, error) {
	g, err := cfg.ResolveGPU()
	if err != nil {
		return StepModel{}, err
	}
	m, err := cfg.ResolveModel()
	if err != nil {
		return StepModel{}, err
	}
	t := cfg.terms(g)
	bw := g.BandwidthGBs * 1e9 * val(t.BandwidthEfficiency)
	flops := g.FP16TFLOPS * 1e12 * val(t.ComputeEfficiency)
	if !(bw > 0) || !(flops > 0) {
		return StepModel{}, fmt.Errorf("GPU %s: effective bandwidth and compute must be > 0", g.Name)
	}
	lmHead := int64(m.Vocab) * int64(m.Hidden)
	sm := StepModel{
		overhead: val(t.StepOverheadS),
		perSeq:   val(t.PerSeqS),
		weights:  float64(m.WeightBytes()) / bw,
		perCtx:   float64(m.KVBytesPerToken()) / bw,
		perSeqM:  float64(m.Vocab*samplerBytesPerDecodeSeq) / bw,
		perTok:   2 * float64(m.Params-m.EmbedParams) / flops,
		perSeqC:  2 * float64(lmHead) / flops,
		frontReq: val(t.FrontendRequestS),
		frontTok: val(t.FrontendTokenS),
	}
	if c := cfg.Calibration; c != nil && c.isLinear() {
		// The linear form stands alone, as before the frontend terms
		// existed: only frontend terms in the same file apply.
		sm.cal = c
		sm.frontReq, sm.frontTok = val(c.FrontendRequestS), val(c.FrontendTokenS)
	}
	return sm, nil
}

// Seconds is the modelled time of a step; 0 when nothing is scheduled.
func (sm StepModel) Seconds(prefillTokens, decodeSeqs, contextTokens int) float64 {
	if prefillTokens == 0 && decodeSeqs == 0 {
		return 0
	}
	p, d, c := float64(prefillTokens), float64(decodeSeqs), float64(contextTokens)
	if sm.cal != nil {
		return sm.cal.A + sm.cal.B*p + sm.cal.C*d + sm.cal.D*c
	}
	mem := sm.weights + c*sm.perCtx + d*sm.perSeqM
	comp := (p+d)*sm.perTok + d*sm.perSeqC
	return sm.overhead + d*sm.perSeq + math.Max(mem, comp)
}

// Duration is Seconds as a time.Duration.
func (sm StepModel) Duration(prefillTokens, decodeSeqs, contextTokens int) time.Duration {
	return time.Duration(sm.Seconds(prefillTokens, decodeSeqs, contextTokens) * float64(time.Second))
}

// FrontendRequestSeconds is the API server's cost per request (HTTP,
// tokenisation, SSE set-up, first detokenisation): callers add it to a
// request's first token, as a client measures TTFT.
func (sm StepModel) FrontendRequestSeconds() float64 { return sm.frontReq }

// FrontendTokenSeconds is the API server's cost per streamed token beyond
// the engine step; callers add it to each later token's arrival.
func (sm StepModel) FrontendTokenSeconds() float64 { return sm.frontTok }

// FrontendRequest and FrontendToken are the same as durations.
func (sm StepModel) FrontendRequest() time.Duration {
	return time.Duration(sm.frontReq * float64(time.Second))
}

// FrontendToken is FrontendTokenSeconds as a time.Duration.
func (sm StepModel) FrontendToken() time.Duration {
	return time.Duration(sm.frontTok * float64(time.Second))
}

// Linear returns the linear calibration in use, or the roofline's linear
// upper bound (memory and compute terms added instead of maxed): the form
// a linear calibration file takes, for documentation.
func (sm StepModel) Linear() Calibration {
	if sm.cal != nil {
		return Calibration{A: sm.cal.A, B: sm.cal.B, C: sm.cal.C, D: sm.cal.D}
	}
	return Calibration{
		A: sm.overhead + sm.weights,
		B: sm.perTok,
		C: sm.perSeq + sm.perTok + sm.perSeqC + sm.perSeqM,
		D: sm.perCtx,
	}
}

func (c Calibration) isLinear() bool { return c.A != 0 || c.B != 0 || c.C != 0 || c.D != 0 }

func (c Calibration) hasTerms() bool { return c.Terms != (Terms{}) }

func (c Calibration) validate() error {
	for name, v := range map[string]float64{"a_s": c.A, "b_s_per_prefill_token": c.B,
		"c_s_per_decode_seq": c.C, "d_s_per_context_token": c.D} {
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("calibration %s must be a finite number >= 0, got %v", name, v)
		}
	}
	if err := c.Terms.validate(); err != nil {
		return fmt.Errorf("calibration %w", err)
	}
	if !c.isLinear() && !c.hasTerms() {
		return fmt.Errorf("calibration has all coefficients 0: a step would take no time")
	}
	return nil
}

// LoadCalibration reads a calibration from a JSON (.json) or YAML file:
// the terms `llmlab sim calibrate` writes, or the linear a_s…d_s form.
// Unknown keys are an error, so a typo cannot silently leave a term unset.
func LoadCalibration(path string) (*Calibration, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read calibration: %w", err)
	}
	var c Calibration
	if strings.EqualFold(filepath.Ext(path), ".json") {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		err = dec.Decode(&c)
	} else {
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		err = dec.Decode(&c)
	}
	if err != nil {
		return nil, fmt.Errorf("parse calibration %s: %w", path, err)
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("calibration %s: %w", path, err)
	}
	return &c, nil
}
