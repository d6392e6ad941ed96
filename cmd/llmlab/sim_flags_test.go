package main

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/llmlab/llmlab/internal/sim/engine"
)

func parseSim(t *testing.T, args ...string) (engineFlags, error) {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var ef engineFlags
	ef.register(fs)
	fs.Usage = func() {}
	return ef, parseEngineArgs(fs, &ef, args)
}

func TestParseEngineArgsVLLMSpelling(t *testing.T) {
	ef, err := parseSim(t, "Qwen/Qwen2.5-1.5B-Instruct-AWQ", "--max_model_len=4096", "--max-num-seqs", "8",
		"--trust-remote-code", "--swap-space", "4", "--dtype", "half")
	if err != nil {
		t.Fatal(err)
	}
	if ef.positional != "Qwen/Qwen2.5-1.5B-Instruct-AWQ" || ef.maxModelLen != 4096 || ef.maxNumSeqs != 8 {
		t.Fatalf("parsed %+v", ef)
	}
	cfg, err := ef.engineConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ModelSpec != "qwen2.5-1.5b" || cfg.Model == nil || cfg.Model.Quantization != "awq" {
		t.Fatalf("model %q %+v", cfg.ModelSpec, cfg.Model)
	}
	// A flag after the model works too; two models do not.
	if _, err := parseSim(t, "--max-num-seqs", "8", "m1", "m2"); err == nil {
		t.Error("two positional models accepted")
	}
	_, err = parseSim(t, "--frobnicate")
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(err.Error(), "unknown flag --frobnicate") {
		t.Errorf("unknown flag: %v", err)
	}
}

func TestEngineConfigModelledFlags(t *testing.T) {
	for name, c := range map[string]struct {
		args []string
		want string // error substring; "" for success
	}{
		"tp 2":          {[]string{"--tensor-parallel-size", "2"}, "single GPU"},
		"bad dtype":     {[]string{"--dtype", "int4"}, "--dtype"},
		"fp32 awq":      {[]string{"--dtype", "float32", "--quantization", "awq"}, "float16 activations"},
		"bad kv dtype":  {[]string{"--kv-cache-dtype", "int8"}, "--kv-cache-dtype"},
		"bad quant":     {[]string{"--quantization", "bnb"}, "unsupported --quantization"},
		"missing path":  {[]string{"./no/such/model"}, "no such file"},
		"fp8 kv ok":     {[]string{"--kv-cache-dtype", "fp8"}, ""},
		"weights ok":    {[]string{"--weight-gib", "0.5"}, ""},
		"neg weights":   {[]string{"--weight-gib", "-1"}, "--weight-gib"},
		"unknown gpu":   {[]string{"--gpu-spec", "/no/such.yaml"}, "GPU spec"},
		"model spec ok": {[]string{"--model-spec", "llama-3.2-1b"}, ""},
	} {
		ef, err := parseSim(t, c.args...)
		if err == nil {
			_, err = ef.engineConfig()
		}
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: error %v, want %q", name, err, c.want)
		}
	}
	// fp8 KV halves the KV bytes per token of the bf16 default.
	ef, _ := parseSim(t, "--kv-cache-dtype", "fp8")
	cfg, _ := ef.engineConfig()
	m, _ := cfg.ResolveModel()
	def, _ := engine.LookupModel(engine.DefaultModelSpec)
	if m.KVBytesPerToken()*2 != def.KVBytesPerToken() {
		t.Errorf("fp8 KV bytes %d, bf16 %d", m.KVBytesPerToken(), def.KVBytesPerToken())
	}
}
