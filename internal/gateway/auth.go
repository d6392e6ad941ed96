package gateway

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
)

// access is who may call what: API keys for the OpenAI routes, the admin
// token for /admin/* and the worker details of /status, and the browser
// origins allowed cross-site. See docs/security.md for the threat model.
type access struct {
	keys     [][sha256.Size]byte // digests, so comparisons take the same time for any length
	admin    *[sha256.Size]byte  // nil: no admin token
	loopback bool                // the gateway listens on a loopback address only
	cors     map[string]bool
	scheme   string // http or https: the gateway's own origin
}

// newAccess resolves the settings' keys (reading api_key_file) and origins.
func newAccess(set Settings) (*access, error) {
	a := &access{loopback: isLoopbackHost(set.Host), cors: map[string]bool{}, scheme: "http"}
	if set.TLSCert != "" {
		a.scheme = "https"
	}
	keys := append([]string(nil), set.APIKeys...)
	if set.APIKeyFile != "" {
		more, err := readKeyFile(set.APIKeyFile)
		if err != nil {
			return nil, err
		}
		keys = append(keys, more...)
	}
	for _, k := range keys {
		a.keys = append(a.keys, sha256.Sum256([]byte(k)))
	}
	if set.AdminToken != "" {
		d := sha256.Sum256([]byte(set.AdminToken))
		a.admin = &d
	}
	for _, o := range set.CORSOrigins {
		a.cors[o] = true
	}
	return a, nil
}

// readKeyFile reads one key per line; blank lines and lines starting with
// # are skipped. A file with no key is an error: silently serving without
// authentication because a file was empty would be the worst outcome.
func readKeyFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("api_key_file: %w", err)
	}
	defer f.Close()
	var keys []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l != "" && !strings.HasPrefix(l, "#") {
			keys = append(keys, l)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("api_key_file %s: %w", path, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("api_key_file %s holds no key", path)
	}
	return keys, nil
}

// isLoopbackHost reports whether a listen host reaches loopback only.
// An empty host or 0.0.0.0 listens on every interface.
func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// checkOrigin validates a --cors-origin value: scheme://host[:port] only.
func checkOrigin(o string) error {
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return fmt.Errorf("%q: want scheme://host[:port], e.g. http://localhost:3000", o)
	}
	if u.Path == "/" {
		return fmt.Errorf("%q: drop the trailing slash (browsers send the origin without one)", o)
	}
	return nil
}

// bearer returns the token of an Authorization: Bearer header, or "".
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// keyOK compares the presented key with every configured one in constant
// time (each comparison over fixed-size digests, none skipped).
func (a *access) keyOK(r *http.Request) bool {
	got := sha256.Sum256([]byte(bearer(r)))
	ok := 0
	for i := range a.keys {
		ok |= subtle.ConstantTimeCompare(got[:], a.keys[i][:])
	}
	return ok == 1
}

func (a *access) adminTokenOK(r *http.Request) bool {
	got := sha256.Sum256([]byte(bearer(r)))
	return subtle.ConstantTimeCompare(got[:], a.admin[:]) == 1
}

// crossOrigin reports whether a browser sent r from a page of another
// origin. Requests without Origin are not from a cross-site page: browsers
// send Origin on every cross-origin request and on every POST.
func (a *access) crossOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	return o != "" && o != a.scheme+"://"+r.Host
}

// loopbackName reports whether a Host header names the loopback interface.
// Checked on admin routes without a token, it defeats DNS rebinding: a page
// of evil.example re-resolved to 127.0.0.1 is same-origin with itself, but
// its requests carry Host: evil.example.
func loopbackName(hostport string) bool {
	h, _, err := net.SplitHostPort(hostport)
	if err != nil {
		h = hostport
	}
	return isLoopbackHost(strings.Trim(h, "[]"))
}

func isAPIRoute(p string) bool   { return strings.HasPrefix(p, "/v1/") || p == "/generate" }
func isAdminRoute(p string) bool { return strings.HasPrefix(p, "/admin/") }

// jsonContentType reports whether a POST's Content-Type is JSON. A request
// without Content-Type is accepted only when it carries no Origin (a
// script, not a browser): text/plain, form encodings and a typeless body
// are what a cross-site page can send without a CORS preflight.
func jsonContentType(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	switch ct {
	case "":
		return r.Header.Get("Origin") == ""
	case "application/json":
		return true // the common case, without parsing
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

// The messages of the guard's two credential refusals (401).
var (
	errNoKey        = errors.New("missing or invalid API key: send 'Authorization: Bearer <key>'")
	errNoAdminToken = errors.New("admin routes need 'Authorization: Bearer <admin token>'")
)

// guard applies, before any route runs: CORS preflight, cross-origin and
// credential checks, the JSON content type of POSTs, and the body limits
// (limits.go). It never reads the body, so a refused request costs nothing.
func (s *Server) guard(next http.Handler) http.Handler {
	a := s.access
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		api, admin := isAPIRoute(p), isAdminRoute(p)
		origin := r.Header.Get("Origin")
		cross := a.crossOrigin(r)
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			s.preflight(w, r, api && a.cors[origin])
			return
		}
		switch {
		case admin && cross:
			s.fail(w, http.StatusForbidden, "cross_origin", "cross-origin request from %q to an admin route refused", origin)
			return
		case admin && a.admin != nil && !a.adminTokenOK(r):
			s.fail(w, http.StatusUnauthorized, "unauthorized", "%v", errNoAdminToken)
			return
		case admin && a.admin == nil && !a.loopback:
			s.fail(w, http.StatusForbidden, "admin_disabled", "admin routes are disabled: the gateway listens on %s (not loopback) and no --admin-token is set", s.set.Host)
			return
		case admin && a.admin == nil && !loopbackName(r.Host):
			s.fail(w, http.StatusForbidden, "admin_disabled", "admin routes without --admin-token answer only requests addressed to localhost or a loopback IP, not %q", r.Host)
			return
		case api && cross && !a.cors[origin]:
			s.fail(w, http.StatusForbidden, "cross_origin", "cross-origin request from %q refused; allow the origin with --cors-origin", origin)
			return
		}
		if api && cross {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", origin)
			h.Add("Vary", "Origin")
		}
		if api && len(a.keys) > 0 && !a.keyOK(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="llmlab"`)
			s.fail(w, http.StatusUnauthorized, "unauthorized", "%v", errNoKey)
			return
		}
		if r.Method == http.MethodPost && (api || admin) && !jsonContentType(r) {
			s.fail(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type %q is not accepted; send application/json", r.Header.Get("Content-Type"))
			return
		}
		if !s.limitBody(w, r) {
			return
		}
		next.ServeHTTP(w, r)
	})
}

// preflight answers a CORS preflight: allowed only for an origin named by
// --cors-origin on the OpenAI routes; anything else is refused, so a
// browser never sends the real request.
func (s *Server) preflight(w http.ResponseWriter, r *http.Request, allowed bool) {
	if !allowed {
		s.fail(w, http.StatusForbidden, "cross_origin", "CORS preflight from %q to %s refused; allow the origin with --cors-origin", r.Header.Get("Origin"), r.URL.Path)
		return
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", r.Header.Get("Origin"))
	h.Set("Access-Control-Allow-Methods", "GET, POST")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, X-Request-Id")
	h.Set("Access-Control-Max-Age", "600")
	h.Add("Vary", "Origin")
	w.WriteHeader(http.StatusNoContent)
}

// detailOK reports whether r may see the worker's pid, address and log
// paths on /status: with an admin token, only its bearer; without one, as
// the admin routes, only on loopback.
func (s *Server) detailOK(r *http.Request) bool {
	a := s.access
	if a.admin != nil {
		return a.adminTokenOK(r)
	}
	return a.loopback && loopbackName(r.Host)
}

// redactStatus drops what an outsider should not learn from /status.
func redactStatus(b *statusBody) {
	b.Worker.PID, b.Worker.URL, b.Worker.LogFile, b.Worker.MetricsURL = 0, "", "", ""
}
