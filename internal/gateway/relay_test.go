package gateway

import (
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
			dl: streamDeadline{rc: deadlines{rec}}}
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
