package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/llmlab/llmlab/internal/openai"
)

// NewTransport returns the HTTP transport a load generator wants: HTTP/1.1
// only (vLLM and the gateway speak it; HTTP/2 would multiplex and hide
// connection costs), no compression (SSE chunks must arrive as sent), no
// proxy, and enough idle connections per host that every in-flight request
// can keep its own and none is re-dialled under load. It has no bound on
// connections; Run's own transport is NewPoolTransport(Config.MaxConns).
func NewTransport() *http.Transport {
	return NewPoolTransport(0)
}

// NewPoolTransport is NewTransport with at most maxConns connections per
// host (0: no bound). The bound is the transport's own (MaxConnsPerHost),
// so it holds even when a dial finishes after its request took an idle
// connection; Run also hands out maxConns slots, so a request that finds
// none is seen and counted instead of queueing inside the transport.
func NewPoolTransport(maxConns int) *http.Transport {
	idle := 8192
	if maxConns > 0 {
		idle = maxConns
	}
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     false,
		TLSNextProto:          map[string]func(string, *tls.Conn) http.RoundTripper{},
		DisableCompression:    true,
		MaxIdleConns:          0,
		MaxIdleConnsPerHost:   idle,
		MaxConnsPerHost:       maxConns,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: 0,
	}
}

// DiscoverModel returns the first model of GET {url}/v1/models; header is
// added to the request (nil: none).
func DiscoverModel(ctx context.Context, client *http.Client, url string, header http.Header) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(url, "/")+"/v1/models", nil)
	if err != nil {
		return "", fmt.Errorf("discover model: %w", err)
	}
	addHeader(req, header)
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("discover model: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("discover model: read: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("discover model: GET /v1/models: %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	var list openai.ModelList
	if err := json.Unmarshal(body, &list); err != nil {
		return "", fmt.Errorf("discover model: decode /v1/models: %w", err)
	}
	if len(list.Data) == 0 {
		return "", errors.New("discover model: /v1/models lists no model; pass --model")
	}
	return list.Data[0].ID, nil
}

// localDialFailure reports whether a request failed for want of a resource
// of the generator's own machine rather than because of the server: no
// file descriptor (EMFILE, ENFILE), no ephemeral port or local address
// (EADDRNOTAVAIL), no socket buffer or memory (ENOBUFS, ENOMEM). A refused
// or reset connection is the server's (or its host's) and is not one.
func localDialFailure(err error) bool {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.EADDRNOTAVAIL, syscall.ENOBUFS, syscall.ENOMEM} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}

// addHeader adds the configured headers (Config.Header) to a request.
func addHeader(req *http.Request, h http.Header) {
	for k, vs := range h {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
}
