package upstream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// chunk frames s as one chunk.
func chunk(s string) string { return fmt.Sprintf("%x\r\n%s\r\n", len(s), s) }

const (
	streamHead = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
	events     = "data: 1\n\ndata: 2\n\ndata: [DONE]\n\n"
)

// chunkedEvents is events as a worker frames them: one chunk per event.
var chunkedEvents = chunk("data: 1\n\n") + chunk("data: 2\n\n") + chunk("data: [DONE]\n\n") + "0\r\n\r\n"

// splitAt cuts s at the given offsets.
func splitAt(s string, at ...int) []string {
	var out []string
	prev := 0
	for _, i := range at {
		out = append(out, s[prev:i])
		prev = i
	}
	return append(out, s[prev:])
}

// piecesServer answers each request with its head and then the pieces of
// its answer, written apart (pause between them), so that they come in
// separate reads.
func piecesServer(t *testing.T, pause time.Duration, answers ...[]string) *rawServer {
	return newRawServer(t, func(_ int, c net.Conn, br *bufio.Reader) {
		for _, pieces := range answers {
			if _, _, ok := readReq(br); !ok {
				return
			}
			for i, p := range pieces {
				if i > 0 {
					time.Sleep(pause)
				}
				if _, err := io.WriteString(c, p); err != nil {
					return
				}
			}
		}
		waitClosed(c)
	})
}

// streamAll streams resp's body, returning what was delivered and how
// often idle ran.
func streamAll(resp interface {
	Stream(func([]byte) error, func() error) error
}) (string, int, error) {
	var got strings.Builder
	idles := 0
	err := resp.Stream(func(p []byte) error { got.Write(p); return nil }, func() error { idles++; return nil })
	return got.String(), idles, err
}

func streamer(t *testing.T, b io.ReadCloser) Streamer {
	t.Helper()
	s, ok := b.(Streamer)
	if !ok {
		t.Fatalf("body %T is not a Streamer", b)
	}
	return s
}

// TestStreamDeliversAndPools: a chunked body cut at awkward places (inside
// a size line, between CR and LF, inside data, inside the terminator) and
// a sized one are delivered whole, idle runs between pieces, and the
// connection goes back to the pool after each.
func TestStreamDeliversAndPools(t *testing.T) {
	body := chunkedEvents
	// The first answer's head is cut too: it is read by net/http's reader,
	// and its body streamed through Read.
	headCut := splitAt(streamHead+body, len(streamHead)-2, len(streamHead)+1, len(streamHead)+9)
	chunked := splitAt(streamHead+body, len(streamHead)+1, len(streamHead)+4, len(streamHead)+9,
		len(streamHead)+len(body)-3, len(streamHead)+len(body)-1)
	sized := splitAt(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(events))+events, 20, 50, 60)
	srv := piecesServer(t, 5*time.Millisecond, headCut, chunked, sized, chunked)
	tr := newTransport(t, Config{})
	for i := range 4 {
		resp, err := tr.Send(context.Background(), &Call{Method: "POST", Addr: srv.ln.Addr().String(), Target: "/", Body: []byte("x")})
		if err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		got, idles, err := streamAll(streamer(t, resp.Body))
		if err != nil || got != events {
			t.Fatalf("stream %d: %q, %v; want %q", i, got, err, events)
		}
		if idles == 0 {
			t.Fatalf("stream %d: idle never ran", i)
		}
		if n := tr.IdleConns(srv.ln.Addr().String()); n != 1 {
			t.Fatalf("stream %d: %d idle connections after the body's end, want 1", i, n)
		}
		if _, err := resp.Body.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("read after Stream: %v, want EOF", err)
		}
	}
	if n := srv.accepted.Load(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
}

// TestStreamSlowerThanTheProbe: gaps longer than the probe interval are
// waited through, and the probe's deadline is cleared before the
// connection is reused (a head slower than the probe still arrives).
func TestStreamSlowerThanTheProbe(t *testing.T) {
	gap := streamProbe*2 + 50*time.Millisecond
	srv := piecesServer(t, gap,
		[]string{streamHead + chunk("data: 1\n\n"), chunk("data: [DONE]\n\n") + "0\r\n\r\n"},
		[]string{"", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"})
	tr := newTransport(t, Config{})
	addr := srv.ln.Addr().String()
	resp, err := tr.Send(context.Background(), &Call{Method: "POST", Addr: addr, Target: "/", Body: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	if got, _, err := streamAll(streamer(t, resp.Body)); err != nil || got != "data: 1\n\ndata: [DONE]\n\n" {
		t.Fatalf("stream: %q, %v", got, err)
	}
	resp, err = tr.Send(context.Background(), &Call{Method: "POST", Addr: addr, Target: "/", Body: []byte("x")})
	if err != nil {
		t.Fatalf("the next request on the connection: %v", err)
	}
	if b := readBody(t, resp); b != "ok" {
		t.Fatalf("next answer %q", b)
	}
	if n := srv.accepted.Load(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
}

// TestStreamWorkerDiesAfterData: a worker that writes an event and closes
// at once (its FIN may come in the same edge as the data) ends the stream
// with an error, not a hang; the event before it is delivered.
func TestStreamWorkerDiesAfterData(t *testing.T) {
	waiting := make(chan struct{}, 1)
	srv := newRawServer(t, func(_ int, c net.Conn, br *bufio.Reader) {
		if _, _, ok := readReq(br); !ok {
			return
		}
		io.WriteString(c, streamHead)
		<-waiting // the client is about to wait for more
		io.WriteString(c, chunk("data: 1\n\n"))
	})
	tr := newTransport(t, Config{})
	for i := range 3 { // the race is not always lost: try a few times
		resp, err := tr.Send(context.Background(), &Call{Method: "POST", Addr: srv.ln.Addr().String(), Target: "/", Body: []byte("x")})
		if err != nil {
			t.Fatal(err)
		}
		var got strings.Builder
		done := make(chan error, 1)
		go func() {
			done <- streamer(t, resp.Body).Stream(func(p []byte) error { got.Write(p); return nil },
				func() error {
					select {
					case waiting <- struct{}{}:
					default:
					}
					return nil
				})
		}()
		select {
		case err := <-done:
			if !errors.Is(err, io.ErrUnexpectedEOF) || got.String() != "data: 1\n\n" {
				t.Fatalf("try %d: %q, %v; want the event and io.ErrUnexpectedEOF", i, got.String(), err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("try %d: the stream hung after the worker closed", i)
		}
		if n := tr.IdleConns(srv.ln.Addr().String()); n != 0 {
			t.Fatalf("a broken connection pooled")
		}
	}
}

// TestStreamEnds covers the other ways a stream ends: cancellation while
// waiting, deliver's error, bytes past the body, a malformed chunk, and
// a body partly read with Read first.
func TestStreamEnds(t *testing.T) {
	tr := newTransport(t, Config{})
	send := func(srv *rawServer, ctx context.Context) Streamer {
		t.Helper()
		resp, err := tr.Send(ctx, &Call{Method: "POST", Addr: srv.ln.Addr().String(), Target: "/", Body: []byte("x")})
		if err != nil {
			t.Fatal(err)
		}
		return streamer(t, resp.Body)
	}

	t.Run("cancel", func(t *testing.T) {
		srv, gone := streamServer(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		s := send(srv, ctx)
		err := s.Stream(func([]byte) error { return nil }, func() error { cancel(); return nil })
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("stream after cancel: %v", err)
		}
		if !<-gone {
			t.Fatal("the server did not see the disconnect")
		}
	})

	t.Run("deliver fails", func(t *testing.T) {
		srv, gone := streamServer(t)
		errStop := errors.New("client gone")
		err := send(srv, context.Background()).Stream(func([]byte) error { return errStop }, func() error { return nil })
		if err != errStop {
			t.Fatalf("stream: %v, want deliver's error as it is", err)
		}
		if !<-gone {
			t.Fatal("the server did not see the disconnect")
		}
	})

	t.Run("bytes past the body", func(t *testing.T) {
		srv := piecesServer(t, 0, []string{streamHead, chunkedEvents + "HTTP/1.1 200 OK\r\n"})
		got, _, err := streamAll(send(srv, context.Background()))
		if err != nil || got != events {
			t.Fatalf("stream: %q, %v", got, err)
		}
		if n := tr.IdleConns(srv.ln.Addr().String()); n != 0 {
			t.Fatal("a connection with bytes past the answer pooled")
		}
	})

	t.Run("malformed chunk", func(t *testing.T) {
		srv := piecesServer(t, 0, []string{streamHead, chunk("data: 1\n\n") + "zz\r\n"})
		got, _, err := streamAll(send(srv, context.Background()))
		if err == nil || got != "data: 1\n\n" {
			t.Fatalf("stream: %q, %v; want the first event and an error", got, err)
		}
		if n := tr.IdleConns(srv.ln.Addr().String()); n != 0 {
			t.Fatal("a broken connection pooled")
		}
	})

	t.Run("read first", func(t *testing.T) {
		srv := piecesServer(t, 5*time.Millisecond, []string{streamHead, chunkedEvents[:20], chunkedEvents[20:]})
		resp, err := tr.Send(context.Background(), &Call{Method: "POST", Addr: srv.ln.Addr().String(), Target: "/", Body: []byte("x")})
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 3)
		if _, err := io.ReadFull(resp.Body, buf); err != nil {
			t.Fatal(err)
		}
		got, _, err := streamAll(streamer(t, resp.Body))
		if err != nil || string(buf)+got != events {
			t.Fatalf("read %q then streamed %q, %v", buf, got, err)
		}
		if n := tr.IdleConns(srv.ln.Addr().String()); n != 1 {
			t.Fatalf("%d idle connections, want 1", n)
		}
	})
}

// TestStreamBodyThroughRead: a body that is not a Streamer (net/http's)
// is streamed through Read.
func TestStreamBodyThroughRead(t *testing.T) {
	var got strings.Builder
	idles := 0
	err := StreamBody(io.NopCloser(strings.NewReader(events)), func(p []byte) error { got.Write(p); return nil },
		func() error { idles++; return nil })
	if err != nil || got.String() != events || idles == 0 {
		t.Fatalf("%q, %d idles, %v", got.String(), idles, err)
	}
	errStop := errors.New("stop")
	closed := &closeCounter{Reader: strings.NewReader(events)}
	if err := StreamBody(closed, func([]byte) error { return errStop }, func() error { return nil }); err != errStop || closed.closed.Load() != 1 {
		t.Fatalf("deliver's error: %v, closed %d times", err, closed.closed.Load())
	}
}

// syncHookContext is a context with internal/http1's abort hook that the
// test fires itself, in its own goroutine, as http1 does when a write to
// the client fails.
type syncHookContext struct {
	context.Context
	f func()
}

func (c *syncHookContext) OnDone(f func()) bool { c.f = f; return true }
func (c *syncHookContext) StopOnDone() bool     { return c.f != nil }

// TestStreamAbortedFromInsideDeliver: the context's hook may run inside
// deliver (the relay's client write failed and ended the request there),
// in the goroutine that holds Stream's read; aborting the connection then
// must not wait for that read to end (Close would: a deadlock).
func TestStreamAbortedFromInsideDeliver(t *testing.T) {
	gone := make(chan bool, 1)
	srv := newRawServer(t, func(_ int, c net.Conn, br *bufio.Reader) {
		if _, _, ok := readReq(br); !ok {
			return
		}
		io.WriteString(c, streamHead+chunk("data: 1\n\n"))
		time.Sleep(20 * time.Millisecond) // the second event comes in the read loop
		io.WriteString(c, chunk("data: 2\n\n"))
		gone <- waitClosed(c)
	})
	tr := newTransport(t, Config{})
	ctx := &syncHookContext{Context: context.Background()}
	resp, err := tr.Send(ctx, &Call{Method: "POST", Addr: srv.ln.Addr().String(), Target: "/", Body: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	errStop := errors.New("client gone")
	done := make(chan error, 1)
	go func() {
		done <- streamer(t, resp.Body).Stream(func(p []byte) error {
			if string(p) != "data: 2\n\n" {
				return nil
			}
			f := ctx.f
			ctx.f = nil
			f()
			return errStop
		}, func() error { return nil })
	}()
	select {
	case err := <-done:
		if err != errStop {
			t.Fatalf("stream: %v, want deliver's error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("aborting from inside deliver deadlocked")
	}
	if !<-gone {
		t.Fatal("the server did not see the disconnect")
	}
}

// TestStreamBatchesAreOneRead: a body that arrives faster than it is read
// (here, all at once) still gets idle after every buffer's worth, so a
// relay's flush, and the write deadline it renews, cover at most one read.
func TestStreamBatchesAreOneRead(t *testing.T) {
	big := strings.Repeat("data: x\n\n", 20000) // 180 KB
	srv := piecesServer(t, 0, []string{streamHead + chunk(big) + "0\r\n\r\n"})
	tr := newTransport(t, Config{})
	resp, err := tr.Send(context.Background(), &Call{Method: "POST", Addr: srv.ln.Addr().String(), Target: "/", Body: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	total, since, most := 0, 0, 0
	err = streamer(t, resp.Body).Stream(func(p []byte) error {
		total += len(p)
		since += len(p)
		most = max(most, since)
		return nil
	}, func() error { since = 0; return nil })
	if err != nil || total != len(big) {
		t.Fatalf("streamed %d of %d bytes: %v", total, len(big), err)
	}
	if most > streamBufferSize {
		t.Fatalf("%d bytes delivered between two idles, want at most one read (%d)", most, streamBufferSize)
	}
}
