package httpwire

import (
	"bufio"
	"maps"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"testing"
)

func TestHeadEnd(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody", 27},
		{"GET / HTTP/1.1\nHost: x\n\nbody", 24},
		{"GET / HTTP/1.1\r\nHost: x\n\r\n", 26},
		{"GET / HTTP/1.1\r\nHost: x\r\n", 0},
		{"GET / HTTP/1.1\r\nHost: x", 0},
		{"", 0},
		{"\r\n", 2}, // an empty head: the caller skips it as a leading empty line
	} {
		if got := HeadEnd([]byte(tc.in)); got != tc.want {
			t.Errorf("HeadEnd(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestParseHeader(t *testing.T) {
	h, err := ParseHeader("content-type: application/json\r\nX-A: 1\r\nx-a: 2\r\nHost:  h  \r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	want := http.Header{"Content-Type": {"application/json"}, "X-A": {"1", "2"}, "Host": {"h"}}
	if !maps.EqualFunc(h, want, slices.Equal) {
		t.Fatalf("got %v, want %v", h, want)
	}
	for _, bad := range []string{
		" folded: x\r\n\r\n",
		"no colon\r\n\r\n",
		": empty name\r\n\r\n",
		"Bad Name: x\r\n\r\n",
		"X: a\x00b\r\n\r\n",
		"X: a\rb\r\n\r\n",
	} {
		if _, err := ParseHeader(bad); err == nil {
			t.Errorf("ParseHeader(%q) accepted", bad)
		}
	}
}

func TestCanonicalKey(t *testing.T) {
	for in, want := range map[string]string{
		"content-type": "Content-Type", "CONTENT-LENGTH": "Content-Length", "x-request-id": "X-Request-Id",
		"X-Custom": "X-Custom", "x": "X", "User-Agent": "User-Agent",
	} {
		if got := CanonicalKey(in); got != want {
			t.Errorf("CanonicalKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseContentLength(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want int64
		ok   bool
	}{
		{[]string{"0"}, 0, true}, {[]string{" 42 "}, 42, true}, {[]string{"5", "5"}, 5, true},
		{[]string{"5", "6"}, 0, false}, {[]string{"-1"}, 0, false}, {[]string{"+1"}, 0, false},
		{[]string{""}, 0, false}, {[]string{"1e3"}, 0, false}, {[]string{"9999999999999999999"}, 0, false},
	} {
		got, ok := ParseContentLength(tc.in)
		if ok != tc.ok || got != tc.want {
			t.Errorf("ParseContentLength(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// FuzzParseHeader holds ParseHeader to net/textproto's reader: a head both
// accept gives the same fields. ParseHeader refuses more (obsolete line
// folding, spaces around names, control bytes), never less: whatever it
// accepts textproto accepts too.
func FuzzParseHeader(f *testing.F) {
	for _, s := range []string{
		"Host: x\r\nContent-Length: 5\r\n\r\n",
		"a: 1\r\nA: 2\r\nb:\r\n\r\n",
		"X-Long: " + strings.Repeat("v", 100) + "\r\n\r\n",
		"k:\tv \t\r\n\r\n",
		"k: v\n\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, head string) {
		end := HeadEnd([]byte(head))
		if end == 0 {
			return
		}
		head = head[:end]
		got, err := ParseHeader(head)
		if err != nil {
			return
		}
		want, terr := textproto.NewReader(bufio.NewReader(strings.NewReader(head))).ReadMIMEHeader()
		if terr != nil {
			t.Fatalf("ParseHeader accepted %q, textproto refused it: %v", head, terr)
		}
		if !maps.EqualFunc(got, http.Header(want), slices.Equal) {
			t.Fatalf("head %q: ParseHeader %v, textproto %v", head, got, want)
		}
	})
}
