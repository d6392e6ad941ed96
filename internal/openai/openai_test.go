package openai

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPromptShapes(t *testing.T) {
	cases := []struct {
		in       string
		text     string
		ids      []int
		isTokens bool
		count    int
	}{
		{`"hello"`, "hello", nil, false, 1},
		{`[1,2,3]`, "", []int{1, 2, 3}, true, 1},
		{`["a","b"]`, "a", nil, false, 2},
		{`[[5,6],[7]]`, "", []int{5, 6}, true, 2},
		{`[]`, "", nil, true, 1},
	}
	for _, c := range cases {
		var p Prompt
		if err := json.Unmarshal([]byte(c.in), &p); err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if p.Text != c.text || p.IsTokens != c.isTokens || p.Count != c.count || len(p.TokenIDs) != len(c.ids) {
			t.Errorf("%s: got %+v", c.in, p)
		}
	}
	for _, bad := range []string{`42`, `{"a":1}`, `[1,"x"]`, `["a",2]`, `[[1],["x"]]`, `true`} {
		var p Prompt
		if err := json.Unmarshal([]byte(bad), &p); err == nil {
			t.Errorf("%s accepted as %+v", bad, p)
		}
	}
	// Round trip keeps the single-prompt shape.
	for _, in := range []string{`"hi"`, `[1,2]`} {
		var p Prompt
		_ = json.Unmarshal([]byte(in), &p)
		out, _ := json.Marshal(p)
		if string(out) != in {
			t.Errorf("round trip %s → %s", in, out)
		}
	}
}

func TestChatMessageText(t *testing.T) {
	var m ChatMessage
	_ = json.Unmarshal([]byte(`{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}`), &m)
	if got, err := m.Text(); err != nil || got != "ab" {
		t.Errorf("parts: %q, %v", got, err)
	}
	_ = json.Unmarshal([]byte(`{"role":"user","content":[{"type":"image_url"}]}`), &m)
	if _, err := m.Text(); err == nil {
		t.Error("image part accepted")
	}
	_ = json.Unmarshal([]byte(`{"role":"user","content":7}`), &m)
	if _, err := m.Text(); err == nil {
		t.Error("number content accepted")
	}
	if got, _ := TextMessage("user", "x\"y").Text(); got != "x\"y" {
		t.Errorf("TextMessage round trip: %q", got)
	}
}

func TestSSERoundTrip(t *testing.T) {
	rec := httptest.NewRecorder()
	w := NewSSEWriter(rec)
	if err := w.WriteJSON(map[string]int{"a": 1}); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteDone(); err != nil {
		t.Fatal(err)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Errorf("content type %q", ct)
	}
	if !rec.Flushed {
		t.Error("events were not flushed")
	}
	// Comments, other fields and multi-line data as the SSE spec allows.
	in := rec.Body.String() + ": keep-alive\n\nevent: x\ndata: line1\ndata: line2\n\n"
	r := NewSSEReader(strings.NewReader(in))
	want := []string{`{"a":1}`, Done, "line1\nline2"}
	for _, w := range want {
		got, err := r.Next()
		if err != nil || string(got) != w {
			t.Fatalf("Next = %q, %v; want %q", got, err, w)
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Errorf("end: %v, want EOF", err)
	}
	r = NewSSEReader(strings.NewReader("data: cut"))
	if _, err := r.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated event: %v, want ErrUnexpectedEOF", err)
	}
}

func TestErrors(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteRetryAfter(rec, 1500*time.Millisecond, "queue full (%d waiting)", 3)
	if rec.Code != 429 || rec.Header().Get("Retry-After") != "2" {
		t.Errorf("code %d, Retry-After %q", rec.Code, rec.Header().Get("Retry-After"))
	}
	var e ErrorResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
		t.Fatal(err)
	}
	if e.Error.Type != TypeRateLimit || e.Error.Code != 429 || e.Error.Message != "queue full (3 waiting)" {
		t.Errorf("body %+v", e)
	}
	rec = httptest.NewRecorder()
	WriteRetryAfter(rec, 0, "x")
	if rec.Header().Get("Retry-After") != "1" {
		t.Errorf("Retry-After for 0 = %q, want 1", rec.Header().Get("Retry-After"))
	}
	if TypeForStatus(418) != TypeBadRequest || TypeForStatus(507) != TypeInternal {
		t.Error("TypeForStatus fallbacks")
	}
}

func TestTopLogprobsKeepsRankOrder(t *testing.T) {
	in := TopLogprobs{{" z", -0.1}, {" a", -1.5}, {`"q"`, -2}}
	b, err := json.Marshal(in)
	if err != nil || string(b) != `{" z":-0.1," a":-1.5,"\"q\"":-2}` {
		t.Fatalf("%s %v", b, err)
	}
	var out TopLogprobs
	if err := json.Unmarshal(b, &out); err != nil || len(out) != 3 || out[0] != in[0] || out[2] != in[2] {
		t.Fatalf("%+v %v", out, err)
	}
	if err := json.Unmarshal([]byte(`[1]`), &out); err == nil {
		t.Fatal("a list decoded as top_logprobs")
	}
}

// FuzzPromptTokenList checks the flat token-list fast path against
// encoding/json: whatever parseIntList accepts, encoding/json decodes to
// the same ids, and a Prompt decoded either way agrees.
func FuzzPromptTokenList(f *testing.F) {
	for _, s := range []string{`[1,2,3]`, `[ -0 , 7 ]`, `[01]`, `[1.0]`, `[1e3]`, `[9223372036854775807]`,
		`[9223372036854775808]`, `[-9223372036854775808]`, `[1,]`, `[,1]`, `[1 2]`, "[\t1\n,\r2 ]", `[-]`, `[]`, `[[1]]`, `["a"]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ids, ok := parseIntList(b)
		var want []int
		err := json.Unmarshal(b, &want)
		if ok && (err != nil || !slices.Equal(ids, want)) {
			t.Fatalf("%q: fast path %v, encoding/json %v, %v", b, ids, want, err)
		}
		var p Prompt
		if perr := p.UnmarshalJSON(b); ok && (perr != nil || !slices.Equal(p.TokenIDs, want) || !p.IsTokens || p.Count != 1) {
			t.Fatalf("%q: prompt %+v, %v", b, p, perr)
		}
	})
}

func TestPromptTokenListFastPath(t *testing.T) {
	// The largest int is the platform's (math.MaxInt).
	for in, want := range map[string][]int{`[1,2,3]`: {1, 2, 3}, `[ -0 , 7 ]`: {0, 7}, "[\t1\n,\r2 ]": {1, 2}, fmt.Sprintf("[%d]", math.MaxInt): {math.MaxInt}} {
		if got, ok := parseIntList([]byte(in)); !ok || !slices.Equal(got, want) {
			t.Errorf("%s: %v, %v", in, got, ok)
		}
	}
	// Left to encoding/json, which decides (and words the errors).
	for _, in := range []string{`[01]`, `[1.0]`, `[1e3]`, `[9223372036854775808]`, `[1,]`, `[1 2]`, `[]`, `[-]`, `[[1]]`, `[1,"x"]`} {
		if got, ok := parseIntList([]byte(in)); ok {
			t.Errorf("%s: fast path took it as %v", in, got)
		}
	}
	var p Prompt
	if err := json.Unmarshal([]byte(`{"p":[1.5]}`), &struct {
		P *Prompt `json:"p"`
	}{&p}); err == nil || !strings.Contains(err.Error(), "token list must hold only integers") {
		t.Errorf("[1.5]: %v", err)
	}
}
