package httpwire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http/httputil"
	"strings"
	"testing"
	"unsafe"
)

// outcome is what decoding a whole input came to.
type outcome struct {
	data []byte
	done bool  // the body and its trailer section ended
	err  error // a definite error; neither done nor err: the input was cut short
	used int   // bytes of the input the body took, when done
}

func (o outcome) String() string {
	return fmt.Sprintf("data=%q done=%v err=%v used=%d", o.data, o.done, o.err, o.used)
}

// refBufSize is the read buffer upstream reads responses through
// (upstream.DefaultReadBufferSize, the size net/http's Transport uses too);
// the reference's line bound depends on it.
const refBufSize = 4096

// reference decodes in the way internal/upstream does today:
// httputil.NewChunkedReader over the connection's bufio.Reader, then the
// trailer lines read and dropped up to an empty one (chunkedBody.Read).
func reference(in []byte) outcome {
	r := bytes.NewReader(in)
	br := bufio.NewReaderSize(r, refBufSize)
	cr := httputil.NewChunkedReader(br)
	var o outcome
	buf := make([]byte, 512)
	for {
		k, err := cr.Read(buf)
		o.data = append(o.data, buf[:k]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			if err != io.ErrUnexpectedEOF {
				o.err = err
			}
			return o
		}
	}
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if err != io.EOF {
				o.err = err
			}
			return o
		}
		if len(line) <= 2 && (len(line) == 1 || line[0] == '\r') {
			o.done = true
			o.used = len(in) - br.Buffered() - r.Len()
			return o
		}
	}
}

// push feeds in to a Dechunker in pieces of the given sizes (0, or past
// the end: the rest), checking Next's contract on every call.
func push(t testing.TB, in []byte, sizes []int) outcome {
	t.Helper()
	var d Dechunker
	var o outcome
	off := 0
	for j := 0; off < len(in); j++ {
		size := len(in) - off
		if len(sizes) > 0 {
			if s := sizes[j%len(sizes)]; s > 0 && s < size {
				size = s
			}
		}
		p := in[off : off+size]
		for len(p) > 0 && !d.Done() {
			data, n, err := d.Next(p)
			if n < 0 || n > len(p) {
				t.Fatalf("Next consumed %d of %d bytes", n, len(p))
			}
			if len(data) > 0 {
				// data aliases p[:n]: no copy.
				at := uintptr(unsafe.Pointer(unsafe.SliceData(data))) - uintptr(unsafe.Pointer(unsafe.SliceData(p)))
				if at > uintptr(n) || at+uintptr(len(data)) > uintptr(n) {
					t.Fatalf("data %q is not within the %d bytes consumed of %q", data, n, p)
				}
			}
			if err != nil {
				if len(data) > 0 {
					t.Fatalf("Next returned data %q with error %v", data, err)
				}
				o.data = append(o.data, data...)
				o.err = err
				// Sticky: the same error, nothing consumed.
				if _, n2, err2 := d.Next(p[n:]); err2 != err || n2 != 0 {
					t.Fatalf("after %v, Next returned n=%d err=%v", err, n2, err2)
				}
				if d.Done() {
					t.Fatalf("Done after error %v", err)
				}
				return o
			}
			if n == 0 {
				t.Fatalf("no progress on %q (state %d)", p, d.state)
			}
			o.data = append(o.data, data...)
			off += n
			p = p[n:]
		}
		if d.Done() {
			o.done = true
			o.used = off
			// Once Done, Next consumes nothing.
			if data, n, err := d.Next(in[off:]); len(data) != 0 || n != 0 || err != nil {
				t.Fatalf("Next after Done: %q %d %v", data, n, err)
			}
			return o
		}
	}
	return o
}

// sameOutcome compares decoded bytes, how the input ended (done, error or
// cut short) and, when done, where the body ended.
func sameOutcome(a, b outcome) bool {
	return bytes.Equal(a.data, b.data) && a.done == b.done && (a.err != nil) == (b.err != nil) &&
		a.used == b.used
}

// checkAgainstReference compares the push decoder's outcome with the
// reference's. The one allowed difference: the push decoder reports an
// error at the first byte no valid body can hold, where the reference may
// still be waiting for the rest of a line (or the second byte after a
// chunk's data) when the input ends. Then every continuation must make the
// reference fail too.
func checkAgainstReference(t testing.TB, in []byte, got outcome) {
	t.Helper()
	ref := reference(in)
	if sameOutcome(got, ref) {
		return
	}
	if got.err != nil && ref.err == nil && !ref.done && bytes.Equal(got.data, ref.data) {
		for _, more := range []string{"\r\n", "\n", "\r\n0\r\n\r\n", "0\r\n\r\n", "\n\r\n", "\r\n\r\n"} {
			ext := append(append([]byte(nil), in...), more...)
			if r := reference(ext); r.err == nil {
				t.Fatalf("push decoder failed early on %q (%v), but the reference reads %q as %v", in, got.err, ext, r)
			}
		}
		return
	}
	t.Fatalf("input %q:\n push      %v\n reference %v", in, got, ref)
}

// excessBody is chunks of one data byte, each with a padded extension,
// enough of them to pass Go's 16 KiB bound on non-data (each adds its
// line and CRLF, less 16 and twice its byte).
func excessBody(chunks int, last string) string {
	var b strings.Builder
	for range chunks {
		b.WriteString("1;" + strings.Repeat("x", 100) + "\r\nX\r\n")
	}
	b.WriteString(last)
	return b.String()
}

type chunkCase struct {
	name string
	in   string
	data string
	done bool
	err  bool
	used int // where the body ends, when done; -1: at len(in)
	// early: the reference, seeing only in, still waits for more (the
	// push decoder already knows the body is broken).
	early bool
}

var chunkCases = []chunkCase{
	{name: "empty body", in: "0\r\n\r\n", done: true, used: -1},
	{name: "multi-chunk", in: "5\r\nhello\r\n1\r\n \r\n6\r\nworld!\r\n0\r\n\r\n", data: "hello world!", done: true, used: -1},
	{name: "lower hex", in: "a\r\n0123456789\r\n0\r\n\r\n", data: "0123456789", done: true, used: -1},
	{name: "upper hex", in: "A\r\n0123456789\r\n0\r\n\r\n", data: "0123456789", done: true, used: -1},
	{name: "mixed hex and leading zeros", in: "00001F\r\n" + strings.Repeat("y", 31) + "\r\n0000\r\n\r\n", data: strings.Repeat("y", 31), done: true, used: -1},
	{name: "sixteen digits", in: "000000000000000" + "3\r\nabc\r\n0\r\n\r\n", data: "abc", done: true, used: -1},
	{name: "extensions", in: "3;name=value;q=\"a;b\"\r\nabc\r\n2;x\r\nde\r\n0;last\r\n\r\n", data: "abcde", done: true, used: -1},
	{name: "empty extension", in: "3;\r\nabc\r\n0\r\n\r\n", data: "abc", done: true, used: -1},
	{name: "trailing white space", in: "3 \t \r\nabc\r\n0\t\r\n\r\n", data: "abc", done: true, used: -1},
	{name: "white space after extension", in: "3;a=b \r\nabc\r\n0\r\n\r\n", data: "abc", done: true, used: -1},
	{name: "trailers", in: "3\r\nabc\r\n0\r\nX-A: 1\r\nX-B: two\r\n\r\n", data: "abc", done: true, used: -1},
	{name: "trailer with bare CR inside", in: "3\r\nabc\r\n0\r\nX-A: \r1\r\n\r\r\n\r\n", data: "abc", done: true, used: -1},
	{name: "LF-only empty line ends trailer", in: "3\r\nabc\r\n0\r\n\n", data: "abc", done: true, used: -1},
	{name: "LF-only trailer lines", in: "3\r\nabc\r\n0\r\nX-A: 1\nX-B: 2\n\n", data: "abc", done: true, used: -1},
	{name: "bytes past the end", in: "3\r\nabc\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n", data: "abc", done: true, used: len("3\r\nabc\r\n0\r\n\r\n")},
	{name: "bytes past an LF end", in: "1\r\nz\r\n0\r\nT: 1\r\n\nnext", data: "z", done: true, used: len("1\r\nz\r\n0\r\nT: 1\r\n\n")},
	{name: "data holding CRLF and digits", in: "7\r\n\r\n0\r\n\r\n\r\n0\r\n\r\n", data: "\r\n0\r\n\r\n", done: true, used: -1},
	{name: "long line at the bound", in: "1;" + strings.Repeat("e", maxChunkLine-4) + "\r\nq\r\n0\r\n\r\n", data: "q", done: true, used: -1},
	{name: "long trailer at the bound", in: "1\r\nq\r\n0\r\nX: " + strings.Repeat("t", maxChunkLine-5) + "\r\n\r\n", data: "q", done: true, used: -1},
	{name: "excess just under", in: excessBody(100, "0\r\n\r\n"), data: strings.Repeat("X", 100), done: true, used: -1},
	{name: "excess ignored on the last chunk", in: excessBody(190, "0;"+strings.Repeat("x", 4000)+"\r\n\r\n"), data: strings.Repeat("X", 190), done: true, used: -1},

	{name: "truncated in size", in: "1", data: ""},
	{name: "truncated in data", in: "5\r\nhel", data: "hel"},
	{name: "truncated before CRLF", in: "5\r\nhello", data: "hello"},
	{name: "truncated after CR", in: "5\r\nhello\r", data: "hello"},
	{name: "truncated in trailer", in: "5\r\nhello\r\n0\r\nX-A: 1\r\n", data: "hello"},
	{name: "truncated before empty line's LF", in: "5\r\nhello\r\n0\r\n\r", data: "hello"},

	{name: "bad hex", in: "5\r\nhello\r\nz\r\n", data: "hello", err: true},
	{name: "bad hex early", in: "g", err: true, early: true},
	{name: "0x prefix", in: "0x5\r\nhello\r\n0\r\n\r\n", err: true},
	{name: "leading space", in: " 5\r\nhello\r\n0\r\n\r\n", err: true},
	{name: "space between digits", in: "1 2\r\n", err: true},
	{name: "space before extension", in: "3 ;x\r\nabc\r\n0\r\n\r\n", err: true},
	{name: "empty size", in: "\r\n", err: true},
	{name: "empty size with extension", in: ";x\r\nabc\r\n", err: true},
	{name: "white space only", in: " \t\r\n", err: true},
	{name: "too large size", in: "10000000000000000\r\n", err: true},
	{name: "too large size early", in: "00000000000000000", err: true, early: true},
	{name: "bare LF after size", in: "3\nabc\r\n0\r\n\r\n", err: true},
	{name: "bare LF after extension", in: "3;x\nabc\r\n0\r\n\r\n", err: true},
	{name: "bare LF after last chunk", in: "3\r\nabc\r\n0\n\r\n", data: "abc", err: true},
	{name: "CR inside size line", in: "3\r;x\r\nabc\r\n", err: true},
	{name: "CR inside extension", in: "3;a\rb\r\nabc\r\n", err: true},
	{name: "two CRs", in: "3\r\r\nabc\r\n", err: true},
	{name: "missing CRLF after data", in: "3\r\nabcd\r\n0\r\n\r\n", data: "abc", err: true},
	{name: "missing CRLF after data early", in: "3\r\nabcd", data: "abc", err: true, early: true},
	{name: "LF only after data", in: "3\r\nabc\n0\r\n\r\n", data: "abc", err: true},
	{name: "CR then junk after data", in: "3\r\nabc\rX0\r\n\r\n", data: "abc", err: true},
	{name: "too long line", in: "1;" + strings.Repeat("e", maxChunkLine-3) + "\r\nq\r\n0\r\n\r\n", err: true},
	{name: "too long white space", in: "1" + strings.Repeat(" ", maxChunkLine) + "\r\nq\r\n0\r\n\r\n", err: true},
	{name: "too long line cut at the bound", in: "1;" + strings.Repeat("e", maxChunkLine-2), err: true},
	{name: "too long trailer", in: "1\r\nq\r\n0\r\nX: " + strings.Repeat("t", maxChunkLine-4) + "\r\n\r\n", data: "q", err: true},
	{name: "too much non-data", in: excessBody(200, "0\r\n\r\n"), data: strings.Repeat("X", 190), err: true},
}

func (c chunkCase) want(in []byte) outcome {
	w := outcome{data: []byte(c.data), done: c.done}
	if c.err {
		w.err = errors.New("some error")
	}
	if c.done {
		w.used = c.used
		if w.used < 0 {
			w.used = len(in)
		}
	}
	return w
}

func TestDechunkerCases(t *testing.T) {
	for _, c := range chunkCases {
		t.Run(c.name, func(t *testing.T) {
			in := []byte(c.in)
			want := c.want(in)
			got := push(t, in, nil)
			if !sameOutcome(got, want) {
				t.Fatalf("got  %v\nwant %v", got, want)
			}
			// The table is what net/http decides too.
			ref := reference(in)
			if c.early {
				if ref.err != nil || ref.done {
					t.Fatalf("marked early, but the reference reads it as %v", ref)
				}
				checkAgainstReference(t, in, got)
			} else if !sameOutcome(ref, want) {
				t.Fatalf("reference %v\nwant      %v", ref, want)
			}
		})
	}
}

// TestDechunkerSplits feeds each case split at every position (see the
// stride for long ones), at every pair of positions (short cases) and byte
// by byte: the outcome may not
// depend on where the reads end.
func TestDechunkerSplits(t *testing.T) {
	for _, c := range chunkCases {
		t.Run(c.name, func(t *testing.T) {
			in := []byte(c.in)
			want := push(t, in, nil)
			check := func(sizes ...int) {
				t.Helper()
				if got := push(t, in, sizes); !sameOutcome(got, want) {
					t.Fatalf("split %v:\ngot  %v\nwant %v", sizes, got, want)
				}
			}
			check(1)
			for i := 1; i < len(in); i++ {
				// The long cases (24 KiB of padded chunks) repeat one
				// chunk: their first and last 256 bytes are split everywhere,
				// the middle at a stride prime to the chunk's 109 bytes,
				// which still ends a piece at every byte of a chunk.
				if i > 256 && i < len(in)-256 && i%37 != 0 {
					continue
				}
				check(i, len(in))
			}
			if len(in) <= 80 {
				for i := 1; i < len(in); i++ {
					for j := 1; i+j < len(in); j++ {
						check(i, j, len(in))
					}
				}
			}
		})
	}
}

func TestDechunkerDataRuns(t *testing.T) {
	// A whole chunk present in p comes back in one call, its CRLF taken
	// along, so each chunk of a read costs one call.
	var d Dechunker
	in := []byte("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
	for _, want := range []struct {
		data string
		n    int
	}{{"hello", 10}, {" world", 11}, {"", 5}} {
		data, n, err := d.Next(in)
		if err != nil || string(data) != want.data || n != want.n {
			t.Fatalf("Next(%q) = %q, %d, %v; want %q, %d", in, data, n, err, want.data, want.n)
		}
		in = in[n:]
	}
	if !d.Done() || len(in) != 0 {
		t.Fatalf("Done=%v, %q left", d.Done(), in)
	}
	// A wrong byte after the data is reported by the next call, the data
	// by this one.
	d.Reset()
	if d.Done() {
		t.Fatal("Done after Reset")
	}
	in = []byte("3\r\nabcX")
	data, n, err := d.Next(in)
	if string(data) != "abc" || n != 6 || err != nil {
		t.Fatalf("Next = %q, %d, %v", data, n, err)
	}
	if _, n, err = d.Next(in[n:]); err == nil || n != 0 {
		t.Fatalf("Next after the data = %d, %v; want an error", n, err)
	}
	d.Reset()
	if data, _, err := d.Next([]byte("1\r\nz")); err != nil || string(data) != "z" {
		t.Fatalf("after Reset: %q, %v", data, err)
	}
}

func TestDechunkerNoAllocs(t *testing.T) {
	in := []byte("5;a=b\r\nhello\r\n6\r\n world\r\n0\r\nX: y\r\n\r\n")
	var d Dechunker
	allocs := testing.AllocsPerRun(100, func() {
		d.Reset()
		for p := in; len(p) > 0 && !d.Done(); {
			_, n, err := d.Next(p)
			if err != nil {
				panic(err)
			}
			p = p[n:]
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per body", allocs)
	}
}

// FuzzDechunker compares the push decoder, fed in fuzz-chosen pieces,
// with net/http's chunked reader (see reference).
func FuzzDechunker(f *testing.F) {
	for i, c := range chunkCases {
		if len(c.in) > 1024 {
			// The 4 and 24 KiB cases (line and excess bounds): each new
			// input grown from one takes the fuzzer a minute (its
			// default -fuzzminimizetime) to minimize, which stalls it;
			// TestDechunkerCases and TestDechunkerSplits compare them
			// with the reference, at every split.
			continue
		}
		f.Add([]byte(c.in), []byte{})
		f.Add([]byte(c.in), []byte{1})
		f.Add([]byte(c.in), []byte{byte(i%7 + 2), 3, 1})
	}
	f.Fuzz(func(t *testing.T, in, splits []byte) {
		if len(in) > 1024 {
			// Left to the table tests, as the long seeds above: the
			// fuzzer grows inputs to the 4 KiB line bound, and then
			// spends its minute minimizing each, not fuzzing.
			t.Skip("input over 1 KiB")
		}
		sizes := make([]int, len(splits))
		for i, s := range splits {
			sizes[i] = int(s)
		}
		got := push(t, in, sizes)
		if whole := push(t, in, nil); !sameOutcome(got, whole) {
			t.Fatalf("split %v: %v, whole: %v", sizes, got, whole)
		}
		checkAgainstReference(t, in, got)
	})
}

// BenchmarkDechunker decodes a stream of server-sent events as a worker
// sends them: a chunk of some 150 bytes per token, each pushed whole (a
// read per chunk), and, in read-4k, as many whole chunks as one 4 KiB
// read holds.
func BenchmarkDechunker(b *testing.B) {
	event := `data: {"id":"cmpl-1","object":"text_completion","created":1700000000,"model":"qwen","choices":[{"index":0,"text":" the","logprobs":null,"finish_reason":null}]}` + "\n\n"
	chunk := fmt.Appendf(nil, "%x\r\n%s\r\n", len(event), event)
	b.Run("chunk-per-push", func(b *testing.B) {
		var d Dechunker
		b.SetBytes(int64(len(chunk)))
		b.ReportAllocs()
		for b.Loop() {
			for p := chunk; len(p) > 0; {
				data, n, err := d.Next(p)
				if err != nil || len(data) == 0 && n == 0 {
					b.Fatal(err)
				}
				p = p[n:]
			}
		}
	})
	b.Run("read-4k", func(b *testing.B) {
		read := bytes.Repeat(chunk, 4096/len(chunk))
		var d Dechunker
		b.SetBytes(int64(len(read)))
		b.ReportAllocs()
		for b.Loop() {
			for p := read; len(p) > 0; {
				_, n, err := d.Next(p)
				if err != nil {
					b.Fatal(err)
				}
				p = p[n:]
			}
		}
	})
	// For a ratio: the reader upstream decodes with today, one Read per
	// chunk's data (two where it straddles the buffer's end) from a 4 KiB
	// bufio.Reader that the chunks stream through.
	b.Run("reference", func(b *testing.B) {
		cr := httputil.NewChunkedReader(bufio.NewReaderSize(&endless{chunk: chunk}, refBufSize))
		buf := make([]byte, 4096)
		b.SetBytes(int64(len(chunk)))
		b.ReportAllocs()
		for b.Loop() {
			if k, err := io.ReadFull(cr, buf[:len(event)]); err != nil {
				b.Fatal(k, err)
			}
		}
	})
	b.Logf("event %d bytes, chunk %d bytes", len(event), len(chunk))
}

// endless reads as chunk repeated without end.
type endless struct {
	chunk []byte
	off   int
}

func (e *endless) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k := copy(p[n:], e.chunk[e.off:])
		n += k
		e.off = (e.off + k) % len(e.chunk)
	}
	return n, nil
}
