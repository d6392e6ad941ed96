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

	"gopkg.in/yaml.v3"
)

// samplerBytesPerDecodeSeq is the memory traffic of sampling one token
// outside the lm_head GEMM (which the weight and FLOP terms already count):
// the bf16 logits are written and read (2+2) and the sampler's fp32 copy is
// written and read (4+4): 12 bytes per vocabulary entry.
const samplerBytesPerDecodeSeq = 12

// StepModel turns a step's shape into modelled GPU time. Without a
// calibration it is a roofline:
//
//	time = overhead + max(memory, compute)
//	memory  = (weights + Σcontext·kv_bytes_per_token + decode_seqs·vocab·12 B) / bandwidth
//	compute = ((prefill_tokens + decode_seqs) · 2·(params − vocab·hidden)
//	           + decode_seqs · 2·vocab·hidden) / (peak · efficiency)
//
// The weights are streamed once per step whatever the batch; each KV entry
// attended to is read once; each scheduled token costs 2 FLOPs per
// parameter of the transformer body, and only sampled positions pay for the
// lm_head (vocab × hidden): vLLM computes logits for the last position of a
// sequence only. The single logits row of a prefill that completes in the
// step is left out, as are attention FLOPs (< 2 % at these lengths). With a
// calibration it is the linear form A + B·prefill + C·decode + D·Σcontext,
// whose coefficients a measurement on the real card gives directly.
type StepModel struct {
	cal      *Calibration
	overhead float64 // seconds
	weights  float64 // seconds to stream the weights
	perCtx   float64 // seconds per context token read
	perSeqM  float64 // seconds of memory traffic per decode seq (sampler)
	perTok   float64 // seconds of compute per scheduled token (body)
	perSeqC  float64 // seconds of lm_head compute per decode seq
}

// NewStepModel builds the step-time model for cfg. cfg must be valid.
func NewStepModel(cfg Config) (StepModel, error) {
	g, err := LookupGPU(cfg.GPU)
	if err != nil {
		return StepModel{}, err
	}
	m, err := LookupModel(cfg.ModelSpec)
	if err != nil {
		return StepModel{}, err
	}
	lmHead := int64(m.Vocab) * int64(m.Hidden)
	flops := g.PeakFLOPS * g.ComputeEfficiency
	return StepModel{
		cal:      cfg.Calibration,
		overhead: g.StepOverheadSeconds,
		weights:  float64(m.WeightBytes()) / g.BandwidthBps,
		perCtx:   float64(m.KVBytesPerToken()) / g.BandwidthBps,
		perSeqM:  float64(m.Vocab*samplerBytesPerDecodeSeq) / g.BandwidthBps,
		perTok:   2 * float64(m.Params-lmHead) / flops,
		perSeqC:  2 * float64(lmHead) / flops,
	}, nil
}

// Seconds is the modelled GPU time of a step; 0 when nothing is scheduled.
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
	return sm.overhead + math.Max(mem, comp)
}

// Duration is Seconds as a time.Duration.
func (sm StepModel) Duration(prefillTokens, decodeSeqs, contextTokens int) time.Duration {
	return time.Duration(sm.Seconds(prefillTokens, decodeSeqs, contextTokens) * float64(time.Second))
}

// Linear returns the calibration in use, or the roofline's linear
// upper bound (memory and compute terms added instead of maxed): the form a
// calibration file takes, for documentation and as a starting point.
func (sm StepModel) Linear() Calibration {
	if sm.cal != nil {
		return *sm.cal
	}
	return Calibration{
		A: sm.overhead + sm.weights,
		B: sm.perTok,
		C: sm.perTok + sm.perSeqC + sm.perSeqM,
		D: sm.perCtx,
	}
}

func (c Calibration) validate() error {
	for name, v := range map[string]float64{"a_s": c.A, "b_s_per_prefill_token": c.B,
		"c_s_per_decode_seq": c.C, "d_s_per_context_token": c.D} {
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("calibration %s must be a finite number >= 0, got %v", name, v)
		}
	}
	if c.A == 0 && c.B == 0 && c.C == 0 && c.D == 0 {
		return fmt.Errorf("calibration has all coefficients 0: a step would take no time")
	}
	return nil
}

// LoadCalibration reads step-time coefficients from a JSON (.json) or YAML
// file. Unknown keys are an error, so a typo cannot silently leave a
// coefficient at 0.
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
