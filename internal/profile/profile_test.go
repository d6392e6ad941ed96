package profile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestShippedProfiles(t *testing.T) {
	names := Names()
	if strings.Join(names, ",") != "aggressive,safe,throughput" {
		t.Fatalf("Names() = %v", names)
	}
	prev := 0
	for _, n := range []string{"safe", "throughput", "aggressive"} {
		p, err := Load(n)
		if err != nil {
			t.Fatalf("Load(%s): %v", n, err)
		}
		if p.Name != n || p.Engine != EngineSim {
			t.Errorf("%s: name %q engine %q", n, p.Name, p.Engine)
		}
		if p.EngineArgs.MaxModelLen != 512 || p.EngineArgs.GPUMemoryUtilization != 0.9 {
			t.Errorf("%s: max_model_len %d, gpu_memory_utilization %v; M1 fixes 512 and 0.9", n, p.EngineArgs.MaxModelLen, p.EngineArgs.GPUMemoryUtilization)
		}
		if p.EngineArgs.MaxNumSeqs <= prev {
			t.Errorf("%s: max_num_seqs %d should grow from safe to aggressive", n, p.EngineArgs.MaxNumSeqs)
		}
		prev = p.EngineArgs.MaxNumSeqs
		// The documented vllm command must be exactly what the profile runs.
		if got, want := strings.Fields(p.VLLMCommand), p.VLLMArgs(); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s: vllm_command\n got %s\nwant %s", n, strings.Join(got, " "), strings.Join(want, " "))
		}
	}
}

func TestLoadFileAndErrors(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "mine.yaml")
	if err := os.WriteFile(good, []byte("name: mine\nmodel: m\nengine: external\nurl: http://127.0.0.1:9\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := Load(good)
	if err != nil {
		t.Fatal(err)
	}
	if p.EngineArgs.MaxNumSeqs != 256 || p.EngineArgs.MaxNumBatchedTokens != 2048 || p.EngineArgs.BlockSize != 16 {
		t.Errorf("defaults not applied: %+v", p.EngineArgs)
	}
	if p.ModelName() != "m" {
		t.Errorf("ModelName = %q", p.ModelName())
	}
	for name, body := range map[string]string{
		"unknown key":     "name: x\nmodel: m\nmax_seqs: 3\n",
		"bad engine":      "name: x\nmodel: m\nengine: tgi\n",
		"external no url": "name: x\nmodel: m\nengine: external\n",
		"util > 1":        "name: x\nmodel: m\nengine_args: {gpu_memory_utilization: 1.5}\n",
		"no chunk small":  "name: x\nmodel: m\nengine_args: {enable_chunked_prefill: false, max_num_batched_tokens: 256}\n",
	} {
		f := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".yaml")
		if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(f); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := Load("nonesuch"); err == nil || !strings.Contains(err.Error(), "throughput") {
		t.Errorf("unknown profile error should list known ones, got %v", err)
	}
}

func TestEngineFlagsChunkedPrefillOff(t *testing.T) {
	p, err := Parse([]byte("name: x\nmodel: m\nengine_args: {enable_chunked_prefill: false, max_num_batched_tokens: 4096}\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(p.EngineFlags(), " ")
	if !strings.Contains(got, "--no-enable-chunked-prefill") || strings.Contains(got, " --enable-chunked-prefill") {
		t.Errorf("flags with chunked prefill off = %q", got)
	}
}
