package gateway

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/llmlab/llmlab/internal/profile"
	"github.com/llmlab/llmlab/internal/testsupport"
	"go.yaml.in/yaml/v3"
)

// do sends one request with the given headers and returns status, headers
// and body.
func do(t *testing.T, method, url, body string, hdr map[string]string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// runGateway runs s.Run on a loopback listener, the way `llmlab serve`
// does (connection cap, server timeouts), until the test ends.
func runGateway(t *testing.T, url string, tweak func(*Settings)) (*Server, string, context.CancelFunc, chan struct{}) {
	t.Helper()
	set := Defaults()
	set.IdleTimeout, set.StopGrace = 0, time.Second
	if tweak != nil {
		tweak(&set)
	}
	s, err := New(set, testProfile(url), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() {
		if err := s.Run(ctx, ln); err != nil {
			t.Errorf("Run: %v", err)
		}
		close(ran)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-ran:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return")
		}
	})
	return s, "http://" + ln.Addr().String(), cancel, ran
}

func TestAPIKeyRequired(t *testing.T) {
	f := newFakeWorker(t)
	_, gw := newGateway(t, f.ts.URL, func(s *Settings) { s.APIKeys = []string{"k1", "second-key"} })
	body := `{"prompt":"hi","max_tokens":2}`
	for _, c := range []struct {
		auth string
		want int
	}{{"", 401}, {"Bearer wrong", 401}, {"Bearer k1x", 401}, {"Basic k1", 401}, {"Bearer k1", 200}, {"bearer second-key", 200}} {
		hdr := map[string]string{"Content-Type": "application/json"}
		if c.auth != "" {
			hdr["Authorization"] = c.auth
		}
		code, h, b := do(t, "POST", gw+"/v1/completions", body, hdr)
		if code != c.want {
			t.Fatalf("Authorization %q: %d %s, want %d", c.auth, code, b, c.want)
		}
		if code == 401 {
			if e := errorOf(t, b); e.Code != 401 || !strings.Contains(e.Message, "Bearer") || h.Get("WWW-Authenticate") == "" {
				t.Fatalf("401 should be an OpenAI error naming the scheme: %+v %v", e, h)
			}
		}
	}
	// Every OpenAI route needs the key; health, readiness and metrics not.
	for path, want := range map[string]int{"/v1/models": 401, "/health": 200, "/ready": 200, "/metrics": 200} {
		if code, _, b := do(t, "GET", gw+path, "", nil); code != want {
			t.Errorf("GET %s without a key: %d %s, want %d", path, code, b, want)
		}
	}
	if code, _, b := do(t, "POST", gw+"/generate", `{"prompt":"x","max_new_tokens":1}`, map[string]string{"Content-Type": "application/json"}); code != 401 {
		t.Errorf("/generate without a key: %d %s", code, b)
	}
}

func TestAPIKeyFile(t *testing.T) {
	dir := t.TempDir()
	empty := dir + "/empty"
	writeFile(t, empty, "# nothing here\n\n")
	set := Defaults()
	set.APIKeyFile = empty
	if _, err := New(set, testProfile("http://127.0.0.1:1"), Options{}); err == nil || !strings.Contains(err.Error(), "no key") {
		t.Fatalf("an empty key file must be refused, got %v", err)
	}
	keys := dir + "/keys"
	writeFile(t, keys, "# team a\nfile-key\n")
	f := newFakeWorker(t)
	_, gw := newGateway(t, f.ts.URL, func(s *Settings) { s.APIKeyFile = keys })
	if code, _, b := do(t, "GET", gw+"/v1/models", "", map[string]string{"Authorization": "Bearer file-key"}); code != 200 {
		t.Fatalf("key from file: %d %s", code, b)
	}
}

// A web page the user opens must not be able to start or stop the worker:
// today's classic attack is a cross-origin text/plain POST, which browsers
// send without a preflight.
func TestAdminCrossSiteRefused(t *testing.T) {
	f := newFakeWorker(t)
	s, gw := newGateway(t, f.ts.URL, nil)
	host := strings.TrimPrefix(gw, "http://")
	for _, c := range []struct {
		name string
		hdr  map[string]string
		want int
	}{
		{"cross-origin text/plain", map[string]string{"Origin": "http://evil.example", "Content-Type": "text/plain"}, 403},
		{"cross-origin json", map[string]string{"Origin": "http://evil.example", "Content-Type": "application/json"}, 403},
		{"null origin", map[string]string{"Origin": "null", "Content-Type": "text/plain"}, 403},
		{"same-origin text/plain", map[string]string{"Origin": gw, "Content-Type": "text/plain"}, 415},
		{"same-origin form", map[string]string{"Origin": gw, "Content-Type": "application/x-www-form-urlencoded"}, 415},
		{"browser without type", map[string]string{"Origin": gw}, 415},
		{"DNS rebinding", map[string]string{"Host": "evil.example:" + strings.Split(host, ":")[1], "Origin": "http://evil.example:" + strings.Split(host, ":")[1], "Content-Type": "application/json"}, 403},
	} {
		code, _, b := do(t, "POST", gw+"/admin/worker/start", "", c.hdr)
		if code != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, code, b, c.want)
			continue
		}
		if e := errorOf(t, b); e.Code != c.want {
			t.Errorf("%s: error %+v", c.name, e)
		}
	}
	if st := s.Supervisor().Status(); st.Starts != 0 {
		t.Fatalf("a refused admin request started the worker: %+v", st)
	}
	// A script (no Origin) on loopback may, without a token.
	if code, _, b := do(t, "POST", gw+"/admin/worker/start", "", map[string]string{"Content-Type": "application/json"}); code != 202 {
		t.Fatalf("loopback admin start: %d %s", code, b)
	}
	// Cross-origin calls to the OpenAI routes are refused too unless allowed.
	code, _, _ := do(t, "POST", gw+"/v1/completions", `{"prompt":"hi"}`, map[string]string{"Origin": "http://evil.example", "Content-Type": "text/plain"})
	if code != 403 {
		t.Fatalf("cross-origin completion: %d, want 403", code)
	}
}

func TestAdminToken(t *testing.T) {
	f := newFakeWorker(t)
	_, gw := newGateway(t, f.ts.URL, func(s *Settings) { s.AdminToken = "adm" })
	json := map[string]string{"Content-Type": "application/json"}
	if code, _, b := do(t, "POST", gw+"/admin/worker/start", "", json); code != 401 {
		t.Fatalf("without token: %d %s", code, b)
	}
	json["Authorization"] = "Bearer adm"
	if code, _, b := do(t, "POST", gw+"/admin/worker/start", "", json); code != 202 {
		t.Fatalf("with token: %d %s", code, b)
	}
	testsupport.WaitFor(t, 0, func() bool {
		_, _, b := do(t, "GET", gw+"/status", "", map[string]string{"Authorization": "Bearer adm"})
		return strings.Contains(b, `"READY"`)
	})
	// The worker's address is a detail for the token's bearer only.
	_, _, open := do(t, "GET", gw+"/status", "", nil)
	_, _, full := do(t, "GET", gw+"/status", "", map[string]string{"Authorization": "Bearer adm"})
	if strings.Contains(open, f.ts.URL) || !strings.Contains(full, f.ts.URL) {
		t.Fatalf("status details: without token %s; with token %s", open, full)
	}
}

func TestAdminClosedBeyondLoopbackWithoutToken(t *testing.T) {
	f := newFakeWorker(t)
	s, gw := newGateway(t, f.ts.URL, func(s *Settings) { s.Host = "0.0.0.0" })
	code, _, b := do(t, "POST", gw+"/admin/worker/start", "", map[string]string{"Content-Type": "application/json"})
	if code != 403 || !strings.Contains(b, "admin-token") {
		t.Fatalf("%d %s, want 403 naming --admin-token", code, b)
	}
	if s.Supervisor().Status().Starts != 0 {
		t.Fatal("worker started")
	}
}

func TestCORSPreflight(t *testing.T) {
	f := newFakeWorker(t)
	_, gw := newGateway(t, f.ts.URL, func(s *Settings) { s.CORSOrigins = []string{"http://app.example"} })
	pre := func(path, origin string) (int, http.Header) {
		code, h, _ := do(t, "OPTIONS", gw+path, "", map[string]string{"Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
		return code, h
	}
	if code, h := pre("/v1/completions", "http://app.example"); code != 204 || h.Get("Access-Control-Allow-Origin") != "http://app.example" {
		t.Fatalf("allowed origin: %d %v", code, h)
	}
	if code, h := pre("/v1/completions", "http://evil.example"); code != 403 || h.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("other origin: %d %v", code, h)
	}
	if code, _ := pre("/admin/worker/stop", "http://app.example"); code != 403 {
		t.Fatalf("admin preflight: %d, want 403 even for an allowed origin", code)
	}
	code, h, b := do(t, "POST", gw+"/v1/completions", `{"prompt":"hi","max_tokens":1}`, map[string]string{"Origin": "http://app.example", "Content-Type": "application/json"})
	if code != 200 || h.Get("Access-Control-Allow-Origin") != "http://app.example" {
		t.Fatalf("allowed cross-origin request: %d %v %s", code, h, b)
	}
	if err := (&Settings{CORSOrigins: []string{"http://x/"}}).Validate(); err == nil || !strings.Contains(err.Error(), "trailing slash") {
		t.Fatalf("bad origin accepted: %v", err)
	}
}

// rawRequest writes head (and body) on a fresh connection and returns the
// status line and how long the answer took.
func rawRequest(t *testing.T, base, head, body string) (string, time.Duration) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	t0 := time.Now()
	if _, err := io.WriteString(c, head+body); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	return strings.TrimSpace(line), time.Since(t0)
}

// A declared body over the limit is refused from the headers: the client
// never sends a byte of it, yet gets its 413.
func TestDeclaredBodyTooLargeRefusedFromHeaders(t *testing.T) {
	f := newFakeWorker(t)
	_, gw := newGateway(t, f.ts.URL, func(s *Settings) { s.MaxBodyBytes = 1000 })
	line, _ := rawRequest(t, gw, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50000000\r\n\r\n", "")
	if !strings.Contains(line, " 413 ") {
		t.Fatalf("got %q, want 413 before any body byte", line)
	}
}

// A body that trickles in is cut at body_read_timeout with a 408, and the
// deadline is lifted once the body is in: a request then held longer than
// it (here by a slow worker) is still served.
func TestBodyReadTimeout(t *testing.T) {
	f := newFakeWorker(t)
	f.block = make(chan struct{})
	_, gw := newGateway(t, f.ts.URL, func(s *Settings) { s.BodyReadTimeout = 300 * time.Millisecond })
	line, took := rawRequest(t, gw, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n", `{"prompt":`)
	if !strings.Contains(line, " 408 ") || took < 300*time.Millisecond {
		t.Fatalf("slow body: %q after %v, want 408 after the 300ms timeout", line, took)
	}
	go func() { time.Sleep(time.Second); close(f.block) }()
	resp, b := post(t, gw+"/v1/completions", `{"prompt":"hi","max_tokens":2}`)
	if resp.StatusCode != 200 {
		t.Fatalf("held past body_read_timeout: %d %s", resp.StatusCode, b)
	}
}

// Past max_conns a new connection gets an immediate 503 (not a wait in the
// backlog), and a place freed is usable again.
func TestConnectionCap(t *testing.T) {
	f := newFakeWorker(t)
	_, gw, _, _ := runGateway(t, f.ts.URL, func(s *Settings) { s.MaxConns = 2 })
	addr := strings.TrimPrefix(gw, "http://")
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		// An answered request proves the connection holds a place.
		fmt.Fprintf(c, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("within the cap: %v %v", resp, err)
		}
		resp.Body.Close()
		held = append(held, c)
	}
	line, _ := rawRequest(t, gw, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", "")
	if !strings.Contains(line, " 503 ") {
		t.Fatalf("past the cap: %q, want 503", line)
	}
	for _, c := range held {
		c.Close()
	}
	testsupport.WaitFor(t, 0, func() bool {
		line, _ := rawRequest(t, gw, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", "")
		return strings.Contains(line, " 200 ")
	})
}

// Idle keep-alive connections and connections that never send a request
// are closed after their timeouts.
func TestIdleConnectionsClosed(t *testing.T) {
	f := newFakeWorker(t)
	_, gw, _, _ := runGateway(t, f.ts.URL, func(s *Settings) {
		s.IdleConnTimeout, s.ReadHeaderTimeout = 300*time.Millisecond, 300*time.Millisecond
	})
	addr := strings.TrimPrefix(gw, "http://")
	for _, first := range []string{"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", ""} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if first != "" {
			_, _ = io.WriteString(c, first)
		}
		_, err = io.Copy(io.Discard, c) // returns when the gateway closes
		c.Close()
		if err != nil {
			t.Fatalf("connection (first request %q) not closed by the gateway: %v", first, err)
		}
	}
}

func TestReadiness(t *testing.T) {
	// A worker URL nobody listens on: every start fails.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + l.Addr().String()
	l.Close()
	s, gw := newGateway(t, dead, func(s *Settings) {
		s.StartupTimeout, s.RestartBackoff, s.MaxRestartBackoff = 200*time.Millisecond, time.Minute, time.Minute
	})
	if code, _, b := do(t, "GET", gw+"/ready", "", nil); code != 200 {
		t.Fatalf("STOPPED should be ready (it wakes on demand): %d %s", code, b)
	}
	code, h, b := do(t, "POST", gw+"/v1/completions", `{"prompt":"hi"}`, map[string]string{"Content-Type": "application/json"})
	if code != 503 || h.Get("Retry-After") == "" {
		t.Fatalf("request held through a failed start: %d Retry-After %q %s", code, h.Get("Retry-After"), b)
	}
	if s.Supervisor().State().String() != "FAILED" {
		t.Fatalf("state %s", s.Supervisor().State())
	}
	code, h, b = do(t, "GET", gw+"/ready", "", nil)
	if code != 503 || h.Get("Retry-After") == "" || !strings.Contains(b, "FAILED") {
		t.Fatalf("/ready while FAILED: %d %v %s", code, h, b)
	}
	if code, _, _ := do(t, "GET", gw+"/health", "", nil); code != 200 {
		t.Fatalf("/health is liveness: %d", code)
	}
}

func TestUnknownSimSpecFailsAtStart(t *testing.T) {
	for _, c := range []struct{ gpu, model, want string }{
		{"gtx-9999", "qwen2.5-0.5b", "unknown GPU"},
		{"rtx3050-4gb-laptop", "llama-999b", "unknown model spec"},
	} {
		p := testProfile("")
		p.Engine, p.URL = profile.EngineSim, ""
		p.Sim = profile.Sim{GPU: c.gpu, ModelSpec: c.model}
		_, err := New(Defaults(), p, Options{Executable: "/bin/true"})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("gpu %s model %s: got %v, want %q", c.gpu, c.model, err, c.want)
		}
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// selfSigned writes a certificate and key for 127.0.0.1 and returns their
// paths and a pool that trusts the certificate.
func selfSigned(t *testing.T) (string, string, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "llmlab test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPath, keyPath := dir+"/cert.pem", dir+"/key.pem"
	writeFile(t, certPath, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, keyPath, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})))
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return certPath, keyPath, pool
}

func TestTLS(t *testing.T) {
	certPath, keyPath, pool := selfSigned(t)
	set := Defaults()
	set.TLSCert, set.TLSKey = certPath, certPath // a certificate is no key
	if _, err := New(set, testProfile("http://127.0.0.1:1"), Options{}); err == nil {
		t.Fatal("a bad key pair must fail at start")
	}
	f := newFakeWorker(t)
	_, gw, _, _ := runGateway(t, f.ts.URL, func(s *Settings) { s.TLSCert, s.TLSKey, s.APIKeys = certPath, keyPath, []string{"k"} })
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	req, _ := http.NewRequest("POST", strings.Replace(gw, "http://", "https://", 1)+"/v1/completions", strings.NewReader(`{"prompt":"hi","max_tokens":1}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer k")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("over TLS: %d", resp.StatusCode)
	}
}

func TestProfileKeyList(t *testing.T) {
	var n yaml.Node
	if err := yaml.Unmarshal([]byte("api_key: [a, b]\ncors_origin: http://x.example\nkeep_logs: true\n"), &n); err != nil {
		t.Fatal(err)
	}
	s := Defaults()
	if err := s.ApplyProfile(*n.Content[0]); err != nil {
		t.Fatal(err)
	}
	if len(s.APIKeys) != 2 || s.APIKeys[1] != "b" || len(s.CORSOrigins) != 1 || !s.KeepLogs {
		t.Fatalf("%+v", s)
	}
	// The environment replaces the profile's list.
	if err := s.ApplyEnv(func(k string) string {
		if k == "LLMLAB_API_KEY" {
			return "c"
		}
		return ""
	}); err != nil || len(s.APIKeys) != 1 || s.APIKeys[0] != "c" {
		t.Fatalf("env: %v %v", err, s.APIKeys)
	}
}

// BenchmarkGuard is the cost the guard adds to every request: with no key,
// and with the key check over 1 and 16 keys.
//
//	go test ./internal/gateway -run '^$' -bench BenchmarkGuard -benchmem
func BenchmarkGuard(b *testing.B) {
	for _, n := range []int{0, 1, 16} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			set := Defaults()
			for i := range n {
				set.APIKeys = append(set.APIKeys, fmt.Sprintf("key-%02d-%s", i, strings.Repeat("x", 40)))
			}
			s, err := New(set, testProfile("http://127.0.0.1:1"), Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close(context.Background())
			h := s.guard(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
			req, _ := http.NewRequest("POST", "http://127.0.0.1:8080/v1/completions", http.NoBody)
			req.Host = "127.0.0.1:8080"
			req.Header.Set("Content-Type", "application/json")
			if n > 0 {
				req.Header.Set("Authorization", "Bearer "+set.APIKeys[n-1])
			}
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(w, req)
			}
			if w.code != 0 {
				b.Fatalf("refused: %d", w.code)
			}
		})
	}
}

type discardWriter struct {
	h    http.Header
	code int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(c int)           { d.code = c }
