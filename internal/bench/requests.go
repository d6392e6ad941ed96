package bench

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// This file keeps per-request rows (`llmlab bench --save-requests`, as
// `vllm bench serve --save-detailed` does): one JSON line per request,
// gzip-compressed, streamed to the file as requests end, so memory stays
// bounded whatever the run's length. The report draws latency CDFs and
// TTFT/TPOT views from them (docs/runfile.md, "Per-request rows").

// RequestRow is one request's line. Times are seconds; latencies count
// from the scheduled send, as the run file's do.
type RequestRow struct {
	Index        int     `json:"i"`
	ScheduledS   float64 `json:"scheduled_s"`
	SentS        float64 `json:"sent_s"`
	TTFTS        float64 `json:"ttft_s"` // 0: no token arrived
	E2ES         float64 `json:"e2e_s"`
	PromptTokens int     `json:"prompt_tokens"`
	OutputTokens int     `json:"output_tokens"`
	// Status is "ok", an error class (recorder.go) or "canceled".
	Status string `json:"status"`
	// Steady is set for requests scheduled in the steady window.
	Steady bool `json:"steady"`
}

// TPOT is the time per output token after the first (0 when undefined).
func (r RequestRow) TPOT() float64 {
	if r.Status != "ok" || r.OutputTokens < 2 || r.TTFTS <= 0 {
		return 0
	}
	return (r.E2ES - r.TTFTS) / float64(r.OutputTokens-1)
}

// RequestsPath is the per-request file beside a run file:
// X.json → X.requests.jsonl.gz.
func RequestsPath(runFile string) string {
	return strings.TrimSuffix(runFile, ".json") + ".requests.jsonl.gz"
}

// RequestLog writes rows as requests end. Safe for concurrent use; a nil
// *RequestLog records nothing.
type RequestLog struct {
	mu         sync.Mutex
	f          *os.File
	zw         *gzip.Writer
	bw         *bufio.Writer
	enc        *json.Encoder
	steadyFrom time.Duration
	steadyTo   time.Duration
	err        error
	n          int
	closed     bool
}

// CreateRequestLog creates the file at path. Close it after the run.
func CreateRequestLog(path string) (*RequestLog, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create requests file: %w", err)
	}
	zw := gzip.NewWriter(f)
	bw := bufio.NewWriterSize(zw, 64<<10)
	return &RequestLog{f: f, zw: zw, bw: bw, enc: json.NewEncoder(bw), steadyFrom: -1}, nil
}

// window sets the steady window (Run calls it before sending).
func (l *RequestLog) window(from, to time.Duration) {
	if l == nil {
		return
	}
	l.mu.Lock()
	l.steadyFrom, l.steadyTo = from, to
	l.mu.Unlock()
}

// add writes o's row; the first write error is kept for Close.
func (l *RequestLog) add(i int, o *outcome) {
	if l == nil {
		return
	}
	row := RequestRow{
		Index: i, ScheduledS: o.sched.Seconds(), SentS: o.sent.Seconds(), E2ES: (o.end - o.sched).Seconds(),
		PromptTokens: o.prompt, OutputTokens: o.output, Status: "ok",
	}
	if o.ttft > 0 {
		row.TTFTS = o.ttft.Seconds()
	}
	switch {
	case o.canceled:
		row.Status = "canceled"
	case o.class != "":
		row.Status = o.class
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	row.Steady = o.sched >= l.steadyFrom && o.sched < l.steadyTo
	if l.err == nil && !l.closed {
		l.err = l.enc.Encode(row)
		l.n++
	}
}

// Rows is the number of rows written.
func (l *RequestLog) Rows() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// Close flushes and closes the file, returning the first error; later
// calls do nothing (so a caller may also defer it).
func (l *RequestLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	err := l.err
	for _, e := range []error{l.bw.Flush(), l.zw.Close(), l.f.Sync(), l.f.Close()} {
		if err == nil {
			err = e
		}
	}
	if err != nil {
		return fmt.Errorf("requests file: %w", err)
	}
	return nil
}

// ReadRequests reads a per-request file.
func ReadRequests(path string) ([]RequestRow, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read requests file: %w", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("read requests file %s: %w", path, err)
	}
	dec := json.NewDecoder(zr)
	var rows []RequestRow
	for {
		var r RequestRow
		if err := dec.Decode(&r); err == io.EOF {
			break
		} else if err != nil {
			return rows, fmt.Errorf("read requests file %s: %w", path, err)
		}
		rows = append(rows, r)
	}
	return rows, nil
}
