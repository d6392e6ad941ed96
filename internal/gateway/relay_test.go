package gateway

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestSSERelayCutsEvents feeds a stream with every kind of line end and
// stray blank line to the relay's event cutter, whole, cut at every place
// into two pieces and into three, and byte by byte: the client gets the
// same events each time (a "\r\n" blank line written as "\n", blank lines
// outside events dropped, the incomplete last event held back), and
// [DONE] is seen.
func TestSSERelayCutsEvents(t *testing.T) {
	in := "\n" + "data: a\n\n" + "data: b\r\n\r\n" + ": note\ndata: c\n\n\n" + "data: d\n\n" + "data: [DONE]\n\n" + "data: part"
	want := "data: a\n\n" + "data: b\r\n\n" + ": note\ndata: c\n\n" + "data: d\n\n" + "data: [DONE]\n\n"
	s, _ := newGateway(t, "http://127.0.0.1:1", nil)
	relay := func(pieces ...string) (string, bool) {
		rec := httptest.NewRecorder()
		e := sseRelay{s: s, w: rec, route: "completions", arrived: time.Now(), first: true,
			dl: streamDeadline{rc: deadlines{rec}}, limit: maxEventBytes}
		for _, p := range pieces {
			if err := e.deliver([]byte(p)); err != nil {
				t.Fatalf("deliver: %v", err)
			}
		}
		if string(e.pend) != "data: part" {
			t.Fatalf("pending %q, want the incomplete event", e.pend)
		}
		return rec.Body.String(), e.done
	}
	check := func(how string, pieces ...string) {
		t.Helper()
		if got, done := relay(pieces...); got != want || !done {
			t.Fatalf("%s: relayed %q (done %v), want %q", how, got, done, want)
		}
	}
	check("whole", in)
	for i := range len(in) {
		check("two pieces", in[:i], in[i:])
		for j := i; j < len(in); j += 7 {
			check("three pieces", in[:i], in[i:j], in[j:])
		}
	}
	check("byte by byte", strings.Split(in, "")...)
}

// TestSSERelayBoundsAnEvent: an event that never ends stops growing at the
// limit, as an error (the relay then ends the stream with an error event).
func TestSSERelayBoundsAnEvent(t *testing.T) {
	s, _ := newGateway(t, "http://127.0.0.1:1", nil)
	for _, pieces := range [][]string{
		{"data: a\n\n" + strings.Repeat("x", 101)},                              // in the piece that starts it
		{"data: a\n\ndata: ", strings.Repeat("x", 60), strings.Repeat("x", 60)}, // grown over pieces
	} {
		rec := httptest.NewRecorder()
		e := sseRelay{s: s, w: rec, route: "completions", arrived: time.Now(), first: true,
			dl: streamDeadline{rc: deadlines{rec}}, limit: 100}
		var err error
		for _, p := range pieces {
			if err = e.deliver([]byte(p)); err != nil {
				break
			}
		}
		if err != errEventTooLarge || rec.Body.String() != "data: a\n\n" || len(e.pend) > 200 {
			t.Fatalf("%d pieces: %v, relayed %q, %d pending", len(pieces), err, rec.Body.String(), len(e.pend))
		}
	}
}

// TestStreamRelayedWhateverTheChunks: a worker that does not flush per
// event (its server cuts the body into 4 KiB chunks, events split
// anywhere, CRLF event ends among them) is relayed event for event.
func TestStreamRelayedWhateverTheChunks(t *testing.T) {
	const n = 3000
	var want strings.Builder
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/completions" {
			return // health
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range n {
			end := "\n\n"
			if i%7 == 0 {
				end = "\r\n\r\n"
			}
			fmt.Fprintf(w, `data: {"choices":[{"index":0,"text":"t%d"}]}`+end, i)
		}
		io.WriteString(w, "data: [DONE]\n\n")
	}))
	defer ts.Close()
	for i := range n {
		end := "\n\n"
		if i%7 == 0 {
			end = "\r\n\n"
		}
		fmt.Fprintf(&want, `data: {"choices":[{"index":0,"text":"t%d"}]}`+end, i)
	}
	want.WriteString("data: [DONE]\n\n")
	_, gw := newGateway(t, ts.URL, nil)
	resp, got := post(t, gw+"/v1/completions", `{"prompt":"hi","stream":true}`)
	if resp.StatusCode != 200 || got != want.String() {
		t.Fatalf("status %d; relayed %d bytes, want %d (equal: %v)", resp.StatusCode, len(got), want.Len(), got == want.String())
	}
}
