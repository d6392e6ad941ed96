package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/llmlab/llmlab/internal/testsupport"
)

// pageErrors collects what a browser shows in its console as errors:
// console.error calls, uncaught exceptions, and browser log entries at
// error level (failed loads, Content-Security-Policy violations).
type pageErrors struct {
	mu   sync.Mutex
	errs []string
}

func (p *pageErrors) watch(ctx context.Context) {
	for m, err := range chromedp.Console(ctx) {
		if err != nil {
			return
		}
		if m.Type == chromedp.ConsoleError || m.IsException() {
			p.mu.Lock()
			p.errs = append(p.errs, fmt.Sprintf("%s (%s:%d)", m, m.URL, m.Line+1))
			p.mu.Unlock()
		}
	}
}

// openChromium starts headless chromium (exe) on a blank page with its
// console watched for errors; both end when the test does.
func openChromium(t *testing.T, exe string, timeout time.Duration) (context.Context, *pageErrors) {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 1000),
		// Containers often have a small /dev/shm.
		chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, timeout)
	errs := &pageErrors{}
	watched := make(chan struct{})
	t.Cleanup(func() {
		cancelT()
		<-watched
		cancelB()
		cancelA()
	})
	// Start the browser on a blank page first: a second action racing the
	// first start would start a second browser on the same profile.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		close(watched)
		t.Fatalf("start chromium: %v", err)
	}
	// Console subscribes when called, so nothing the page logs is missed.
	go func() { errs.watch(ctx); close(watched) }()
	return ctx, errs
}

func (p *pageErrors) list() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.errs...)
}

// The status page, in real headless chromium: it loads with no console
// errors, draws something (the screenshot is not blank), and its numbers
// change while load runs. With LLMLAB_STATUSPAGE_SCREENSHOT=file.png the
// screenshot is kept (docs/img/statuspage.png was made so).
func TestStatusPageInChromium(t *testing.T) {
	exe := testsupport.NeedBinary(t, "chromium", "chromium-browser", "google-chrome")
	_, base := startServe(t, "--worker-startup-seconds", "0.5")

	ctx, errs := openChromium(t, exe, 120*time.Second)

	read := func(ids ...string) map[string]string {
		t.Helper()
		js := `Object.fromEntries(` + jsonList(ids) + `.map((id) => [id, document.getElementById(id).textContent]))`
		out, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]string](js))
		if err != nil {
			t.Fatalf("read page: %v", err)
		}
		return out
	}
	// waitFor polls the page until cond holds on the fields' texts.
	waitFor := func(what string, cond func(map[string]string) bool, ids ...string) map[string]string {
		t.Helper()
		deadline := time.Now().Add(45 * time.Second)
		for {
			v := read(ids...)
			if cond(v) {
				return v
			}
			if time.Now().After(deadline) {
				t.Fatalf("page never showed %s; last %v; console errors %v", what, v, errs.list())
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	fields := []string{"worker-state", "rps", "p95", "p50", "queue-depth", "in-flight", "cold-starts", "conn", "transitions"}

	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatalf("open %s: %v", base, err)
	}
	idle := waitFor("its first poll", func(v map[string]string) bool {
		return v["worker-state"] == "STOPPED" && strings.HasPrefix(v["conn"], "live")
	}, fields...)
	if idle["rps"] != "0.00" || idle["p95"] != "–" {
		t.Fatalf("idle page shows traffic: %v", idle)
	}

	lctx, stopLoad := context.WithCancel(context.Background())
	wait := load(lctx, base, 5)
	busy := waitFor("load", func(v map[string]string) bool {
		return v["worker-state"] == "READY" && v["rps"] != "0.00" && v["p95"] != "–" && v["cold-starts"] == "1" &&
			strings.Contains(v["transitions"], "STARTING → READY")
	}, fields...)
	t.Logf("idle page: %v", idle)
	t.Logf("under load: %v", busy)

	keep := os.Getenv("LLMLAB_STATUSPAGE_SCREENSHOT")
	if keep != "" {
		time.Sleep(25 * time.Second) // let the charts fill for the docs
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	stopLoad()
	wait()
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if n := colours(img); n < 50 {
		t.Fatalf("screenshot has %d colours: blank", n)
	}
	if keep != "" {
		if err := os.WriteFile(keep, shot, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if e := errs.list(); len(e) > 0 {
		t.Fatalf("console errors: %v", e)
	}
}

// colours counts distinct colours (a blank page has one or two).
func colours(img image.Image) int {
	seen := map[[3]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, _ := img.At(x, y).RGBA()
			seen[[3]uint32{r >> 8, g >> 8, bl >> 8}] = true
		}
	}
	return len(seen)
}

func jsonList(ss []string) string {
	b, _ := json.Marshal(ss)
	return string(b)
}
