package infra

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/llmlab/llmlab/internal/profile"
	"github.com/llmlab/llmlab/internal/testsupport"
)

// composeConfig runs `docker-compose config` on files (in infra/compose)
// with env added to a minimal environment, and returns its output.
func composeConfig(t *testing.T, env []string, files ...string) (string, error) {
	t.Helper()
	bin := testsupport.NeedBinary(t, "docker-compose")
	args := []string{}
	for _, f := range files {
		args = append(args, "-f", f)
	}
	cmd := exec.Command(bin, append(args, "config")...)
	cmd.Dir = "compose"
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

type composeFile struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Command     []string          `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		Volumes     []string          `yaml:"volumes"`
		Ports       []string          `yaml:"ports"`
		Deploy      struct {
			Resources struct {
				Reservations struct {
					Devices []struct {
						Driver       string   `yaml:"driver"`
						Count        int      `yaml:"count"`
						Capabilities []string `yaml:"capabilities"`
					} `yaml:"devices"`
				} `yaml:"reservations"`
			} `yaml:"resources"`
		} `yaml:"deploy"`
	} `yaml:"services"`
}

func parseCompose(t *testing.T, out string) composeFile {
	t.Helper()
	var c composeFile
	if err := yaml.Unmarshal([]byte(out), &c); err != nil {
		t.Fatalf("parse docker-compose config output: %v\n%s", err, out)
	}
	return c
}

func TestComposeFilesValid(t *testing.T) {
	env := []string{"GRAFANA_ADMIN_PASSWORD=test-only"}
	for _, files := range [][]string{{"docker-compose.yml"}, {"docker-compose.yml", "docker-compose.gpu.yml"}} {
		out, err := composeConfig(t, env, files...)
		if err != nil {
			t.Fatalf("docker-compose %v config: %v\n%s", files, err, out)
		}
		c := parseCompose(t, out)
		for _, s := range []string{"gateway", "redis", "prometheus", "grafana"} {
			if _, ok := c.Services[s]; !ok {
				t.Errorf("%v: no service %s", files, s)
			}
		}
		for name, s := range c.Services {
			// Pinned: a tag, never latest (the gateway is built here).
			img := s.Image
			if name != "gateway" && (!strings.Contains(img, ":") || strings.HasSuffix(img, ":latest")) {
				t.Errorf("%v: service %s image %q is not pinned", files, name, img)
			}
			for _, p := range s.Ports {
				if !strings.HasPrefix(p, "127.0.0.1:") {
					t.Errorf("%v: service %s publishes %s beyond loopback", files, name, p)
				}
			}
		}
	}
}

// Without the Grafana password docker-compose refuses, naming the variable.
func TestComposeNeedsGrafanaPassword(t *testing.T) {
	out, err := composeConfig(t, nil, "docker-compose.yml")
	if err == nil || !strings.Contains(out, "GRAFANA_ADMIN_PASSWORD") {
		t.Fatalf("want a refusal naming GRAFANA_ADMIN_PASSWORD, got err %v:\n%s", err, out)
	}
}

// The GPU file runs vLLM with exactly the throughput profile's arguments,
// reserves a GPU, and points the gateway at it as an external engine with
// the same engine arguments.
func TestComposeGPUMatchesThroughputProfile(t *testing.T) {
	out, err := composeConfig(t, []string{"GRAFANA_ADMIN_PASSWORD=test-only"}, "docker-compose.yml", "docker-compose.gpu.yml")
	if err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, out)
	}
	c := parseCompose(t, out)
	prof, err := profile.Load(profile.DefaultName)
	if err != nil {
		t.Fatal(err)
	}
	if prof.Name != "throughput" {
		t.Fatalf("default profile is %s; this test checks throughput", prof.Name)
	}
	v := c.Services["vllm"]
	want := append(prof.VLLMArgs()[2:], "--host", "0.0.0.0", "--port", "8000") // the image's entrypoint is `vllm serve`
	if !slices.Equal(v.Command, want) {
		t.Errorf("vllm command\n got %q\nwant %q", v.Command, want)
	}
	if !regexp.MustCompile(`^vllm/vllm-openai:v\d+\.\d+\.\d+$`).MatchString(v.Image) {
		t.Errorf("vllm image %q is not a pinned vllm/vllm-openai release", v.Image)
	}
	devs := v.Deploy.Resources.Reservations.Devices
	if len(devs) != 1 || devs[0].Driver != "nvidia" || !slices.Contains(devs[0].Capabilities, "gpu") {
		t.Errorf("vllm reserves no NVIDIA GPU: %+v", devs)
	}

	gw := c.Services["gateway"]
	const mounted = "/etc/llmlab/throughput-gpu.yaml"
	if gw.Environment["LLMLAB_PROFILE"] != mounted {
		t.Errorf("gateway LLMLAB_PROFILE %q, want %s", gw.Environment["LLMLAB_PROFILE"], mounted)
	}
	if !slices.ContainsFunc(gw.Volumes, func(s string) bool { return strings.Contains(s, ":"+mounted) }) {
		t.Errorf("gateway does not mount %s: %v", mounted, gw.Volumes)
	}
	gp, err := profile.Load(filepath.Join("compose", "throughput-gpu.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if gp.Engine != profile.EngineExternal || gp.URL != "http://vllm:8000" {
		t.Errorf("gpu profile engine %s url %s, want external http://vllm:8000", gp.Engine, gp.URL)
	}
	if gp.EngineArgs != prof.EngineArgs || gp.Model != prof.Model || gp.ServedModelName != prof.ServedModelName {
		t.Errorf("gpu profile differs from throughput: %+v vs %+v", gp, prof)
	}
}

// The Dockerfile is multi-stage, builds a static binary and runs it as a
// non-root user; the version it stamps reaches `llmlab version` (built
// here with the Dockerfile's own -X flags, as no container engine is).
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("docker/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	if n := strings.Count(df, "\nFROM "); n < 2 {
		t.Errorf("want a multi-stage build, found %d FROM lines", n)
	}
	for _, want := range []string{"CGO_ENABLED=0", "USER nonroot", "distroless/static"} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	xs := regexp.MustCompile(`-X (\S+)=\$\{(\w+)\}`).FindAllStringSubmatch(df, -1)
	if len(xs) != 2 {
		t.Fatalf("want -X flags for version and revision, found %v", xs)
	}
	vals := map[string]string{"VERSION": "v9.8.7-test", "REVISION": "0123abcd"}
	var ld []string
	for _, x := range xs {
		ld = append(ld, "-X", x[1]+"="+vals[x[2]])
	}
	bin := filepath.Join(t.TempDir(), "llmlab")
	build := exec.Command("go", "build", "-ldflags", strings.Join(ld, " "), "-o", bin, "../cmd/llmlab")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "v9.8.7-test") || !strings.Contains(string(out), "0123abcd") {
		t.Fatalf("llmlab version with the Dockerfile's stamps: %s", out)
	}
}
