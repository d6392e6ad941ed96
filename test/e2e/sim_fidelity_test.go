package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/llmlab/llmlab/internal/profile"
)

// TestSimRunsEveryProfileVLLMCommand: each profile's vllm_command runs
// unchanged with `vllm` replaced by `llmlab sim` (only a free port and an
// instant start are appended), and serves the profile's model name.
func TestSimRunsEveryProfileVLLMCommand(t *testing.T) {
	for _, name := range profile.Names() {
		t.Run(name, func(t *testing.T) {
			p, err := profile.Load(name)
			if err != nil {
				t.Fatal(err)
			}
			line, ok := strings.CutPrefix(strings.TrimSpace(p.VLLMCommand), "vllm ")
			if !ok {
				t.Fatalf("vllm_command %q does not start with vllm", p.VLLMCommand)
			}
			port := freePort(t)
			args := append([]string{"sim"}, strings.Fields(line)...)
			proc := start(t, append(args, "--port", itoa(port), "--startup-seconds", "0")...)
			base := fmt.Sprintf("http://127.0.0.1:%d", port)
			waitHTTP(t, proc, base+"/health", 60*time.Second)
			resp, err := http.Get(base + "/v1/models")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(body), p.ServedModelName) {
				t.Errorf("/v1/models %s lacks %q", body, p.ServedModelName)
			}
			if out := proc.out.String(); !strings.Contains(out, "GPU KV cache size: ") {
				t.Errorf("no KV cache line in the start-up log:\n%s", out)
			}
		})
	}
}

// runLLMLab runs llmlab to completion and returns its exit code and output.
func runLLMLab(t *testing.T, args ...string) (int, string) {
	t.Helper()
	p := start(t, args...)
	code := p.wait(t, 60*time.Second)
	return code, p.out.String()
}

func TestSimVLLMFlagSurface(t *testing.T) {
	// vLLM's spellings and accepted no-op flags parse; the plan is printed.
	code, out := runLLMLab(t, "sim", "plan", "Qwen/Qwen2.5-0.5B-Instruct", "--max_model_len", "512",
		"--dtype", "bfloat16", "--seed", "1", "--disable-log-requests", "--trust-remote-code",
		"--tokenizer", "Qwen/Qwen2.5-0.5B-Instruct", "--download-dir", "/tmp", "--swap-space", "4",
		"--uvicorn-log-level", "warning", "--tensor-parallel-size", "1")
	if code != 0 || !strings.Contains(out, `"kv_tokens"`) {
		t.Fatalf("accepted flags: exit %d\n%s", code, out)
	}
	// An unknown flag is a usage error that names it.
	code, out = runLLMLab(t, "sim", "serve", "Qwen/Qwen2.5-0.5B-Instruct", "--no-such-flag", "1")
	if code != 2 || !strings.Contains(out, "unknown flag --no-such-flag") {
		t.Errorf("unknown flag: exit %d\n%s", code, out)
	}
	// Tensor parallelism is refused clearly.
	code, out = runLLMLab(t, "sim", "plan", "--tensor-parallel-size", "2")
	if code != 2 || !strings.Contains(out, "single GPU") {
		t.Errorf("tp 2: exit %d\n%s", code, out)
	}
	// A card whose desktop holds memory refuses util 0.9 with vLLM's words.
	code, out = runLLMLab(t, "sim", "--gpu", "rtx3050-4gb-laptop-wsl", "--port", itoa(freePort(t)))
	if code != 1 || !strings.Contains(out, "Free memory on device (3.21/4.0 GiB) on startup is less than desired GPU memory utilization (0.9, 3.6 GiB)") {
		t.Errorf("free-memory refusal: exit %d\n%s", code, out)
	}
	// An AWQ repository name selects the quantised weights.
	code, out = runLLMLab(t, "sim", "plan", "Qwen/Qwen2.5-1.5B-Instruct-AWQ", "--gpu-memory-utilization", "0.78",
		"--max-num-seqs", "8", "--max-model-len", "4096", "--gpu", "rtx3050-4gb-laptop-wsl", "--gpu-memory-utilization", "0.78")
	if code != 0 || !strings.Contains(out, `"model_spec": "qwen2.5-1.5b"`) {
		t.Errorf("AWQ model: exit %d\n%s", code, out)
	}
}

// TestSimPlanConfigJSONAndGPUSpec: a model directory with a config.json
// and a --gpu-spec file with spec-sheet figures only.
func TestSimPlanConfigJSONAndGPUSpec(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "tiny-llama")
	if err := os.Mkdir(model, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := `{"model_type":"llama","hidden_size":2048,"intermediate_size":8192,"num_attention_heads":32,
"num_hidden_layers":16,"num_key_value_heads":8,"head_dim":64,"vocab_size":128256,"max_position_embeddings":131072,
"torch_dtype":"bfloat16","tie_word_embeddings":true}`
	if err := os.WriteFile(filepath.Join(model, "config.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := filepath.Join(dir, "card.yaml")
	if err := os.WriteFile(spec, []byte("name: my-8gb\nmemory_total_gib: 7.6\nbandwidth_gbs: 288\nfp16_tflops: 44\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out := runLLMLab(t, "sim", "plan", model, "--gpu-spec", spec, "--max-num-seqs", "64", "--max-num-batched-tokens", "4096")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	var rep struct {
		GPU             string `json:"gpu"`
		KVBytesPerToken int64  `json:"kv_bytes_per_token"`
		Plan            struct {
			KVTokens       int     `json:"kv_tokens"`
			MaxConcurrency float64 `json:"max_concurrency"`
			WeightBytes    int64   `json:"weight_bytes"`
		} `json:"plan"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// Llama-3.2-1B: 2 × 16 × 8 × 64 × 2 = 32 KiB of KV per token, 1.24 B bf16 parameters.
	if rep.GPU != "my-8gb" || rep.KVBytesPerToken != 32768 || rep.Plan.KVTokens <= 0 || rep.Plan.MaxConcurrency <= 0 ||
		rep.Plan.WeightBytes < 2_400_000_000 || rep.Plan.WeightBytes > 2_500_000_000 {
		t.Errorf("plan %+v", rep)
	}
	// The same model directory serves requests (token ids below its vocabulary).
	port := freePort(t)
	srv := start(t, "sim", "serve", model, "--gpu-spec", spec, "--port", itoa(port), "--startup-seconds", "0")
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitHTTP(t, srv, base+"/health", 60*time.Second)
	resp, err := http.Post(base+"/v1/completions", "application/json",
		strings.NewReader(`{"model":"`+model+`","prompt":"hi","max_tokens":4,"ignore_eos":true}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"completion_tokens":4`) {
		t.Errorf("completion from a config.json model: %d %s", resp.StatusCode, body)
	}
	code, out = runLLMLab(t, "sim", "plan", filepath.Join(dir, "missing"), "--gpu-spec", spec)
	if code == 0 {
		t.Errorf("missing model dir accepted:\n%s", out)
	}
}

// TestSimCalibrateCLI fits the default card's published data and uses the
// written file.
func TestSimCalibrateCLI(t *testing.T) {
	out := filepath.Join(t.TempDir(), "cal.yaml")
	code, text := runLLMLab(t, "sim", "calibrate", "../../configs/calibration/rtx3050-4gb-laptop.yaml", "-o", out)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, text)
	}
	for _, want := range []string{"startup", "decode", "prefill", "serve", "KV tokens", "error"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	code, text = runLLMLab(t, "sim", "plan", "--calibration", out)
	if code != 0 || !strings.Contains(text, `"kv_tokens"`) {
		t.Errorf("plan with the written calibration: exit %d\n%s", code, text)
	}
	code, text = runLLMLab(t, "sim", "calibrate", "../../configs/calibration/rtx3050-4gb-laptop.yaml", "-o", "-", "--max-error-pct", "1")
	if code != 4 {
		t.Errorf("--max-error-pct 1: exit %d (long prompts are off by more)\n%s", code, text)
	}
	code, _ = runLLMLab(t, "sim", "calibrate")
	if code != 2 {
		t.Errorf("no file: exit %d", code)
	}
}
