package httpwire

import "errors"

// The chunked transfer coding (RFC 9112 §7.1), decoded by a push state
// machine for the gateway's stream relay, which reads the worker's socket
// itself (inside syscall.RawConn.Read) and so cannot hand a bufio.Reader
// to httputil.NewChunkedReader. The rules are those that reader and
// internal/upstream's chunkedBody apply today (net/http/internal/chunked.go,
// Go 1.26), so the two paths accept and reject the same bodies:
//
//   - a chunk-size line ends in CRLF; a bare LF, or a CR anywhere but
//     just before the LF, is an error (RFC 9112 errata 7633);
//   - trailing spaces and tabs are trimmed first, then a chunk extension
//     (from the first ';') is dropped, then the rest must be 1 to 16 hex
//     digits: so "1 ;x" (white space before ';') is an error, as in Go;
//   - the data is followed by exactly "\r\n";
//   - size 0 is the last chunk; trailer lines follow up to an empty line
//     ("\r\n" or a bare "\n"), each read to its LF whatever it holds, and
//     are dropped (the gateway relays no trailers);
//   - Go's guard against a sender that pads chunks with extensions: the
//     "excess" of line bytes over 16 per chunk plus twice its data may not
//     pass 16 KiB.
//
// Line length: upstream reads through a bufio.Reader of
// DefaultReadBufferSize (4 KiB), whose ReadSlice fails when 4096 bytes
// hold no LF; so here, too, a chunk-size line or a trailer line may be at
// most maxChunkLine bytes with its LF. (net/http's own 4096 check is on
// the line without its CRLF, so a larger buffer would let one more byte
// through.) Real servers send lines of a few bytes; the bound on trailer
// lines just keeps a broken one from being read forever.
//
// The one deliberate difference: errors are reported at the first byte
// that no valid body can hold (a bad hex digit, a CR not followed by LF,
// anything but CR after a chunk's data), where the reader reports them
// once the line, or the two bytes after the data, are complete. A relay
// fails a broken stream without waiting for more bytes that may never
// come; a body that is only cut short is never an error, just not Done.

// maxChunkLine bounds a chunk-size or trailer line, LF included (see above).
const maxChunkLine = 4096

// maxChunkExcess is Go's bound on the excess of framing over data.
const maxChunkExcess = 16 << 10

var (
	errChunkLineTooLong = errors.New("httpwire: chunked encoding: line too long")
	errChunkBareLF      = errors.New("httpwire: chunked encoding: chunk line ends with bare LF")
	errChunkCR          = errors.New("httpwire: chunked encoding: invalid CR in chunk line")
	errChunkEmptySize   = errors.New("httpwire: chunked encoding: empty hex number for chunk length")
	errChunkBadSize     = errors.New("httpwire: chunked encoding: invalid byte in chunk length")
	errChunkTooLarge    = errors.New("httpwire: chunked encoding: chunk length too large")
	errChunkExcess      = errors.New("httpwire: chunked encoding: too much non-data")
	errChunkMalformed   = errors.New("httpwire: chunked encoding: malformed (chunk data not followed by CRLF)")
)

// Dechunker's states. The zero value starts a chunk-size line.
const (
	dcSize        uint8 = iota // hex digits of the chunk size
	dcSizeOWS                  // white space after them (only CR may follow)
	dcExt                      // a chunk extension, up to CR
	dcSizeLF                   // CR seen; LF ends the line
	dcData                     // d.n bytes of data left
	dcDataCR                   // CR after the data
	dcDataLF                   // LF after the data
	dcTrailerLine              // start of a trailer line
	dcTrailerCR                // a trailer line that began with CR
	dcTrailerText              // inside a trailer field line
	dcDone                     // the trailer section's empty line consumed
)

// Dechunker decodes a chunked body pushed to it in pieces of any size.
// The zero value is ready to use.
type Dechunker struct {
	state  uint8
	digits uint8  // hex digits read on this size line
	line   int    // bytes of the current line read so far
	n      uint64 // the chunk size being read, then its data left
	excess int64  // Go's non-data accounting (see beginChunk there)
	err    error
}

// Done reports whether the last chunk and the trailer section (up to its
// empty line) were consumed.
func (d *Dechunker) Done() bool { return d.state == dcDone }

// Reset makes d ready for a new body.
func (d *Dechunker) Reset() { *d = Dechunker{} }

// Next decodes from the front of p. data is the next run of body bytes
// (a subslice of p, possibly empty) and n how many bytes of p it consumed
// (framing and data). Callers loop: `for len(p) > 0 && !d.Done() { data,
// n, err := d.Next(p); ...; p = p[n:] }`.
// Once Done, Next consumes nothing: p[n:] are bytes past the body's end.
// Errors are sticky (every later call returns the same error).
//
// A call with len(p) > 0 that returns no error before Done consumes at
// least one byte. It returns at most one run of data: the framing before
// it, all of the chunk's data present in p, and the CRLF after it as far
// as p holds it; so a read that holds whole chunks takes one call per
// chunk. On an error, n counts the bytes before the offending one.
func (d *Dechunker) Next(p []byte) (data []byte, n int, err error) {
	if d.err != nil {
		return nil, 0, d.err
	}
	i := 0
	for i < len(p) {
		if d.state == dcData {
			k := len(p) - i
			if uint64(k) > d.n {
				k = int(d.n)
			}
			data = p[i : i+k]
			i += k
			d.n -= uint64(k)
			if d.n == 0 {
				// Take the CRLF too where it is here and right; a wrong
				// byte is left for the next call to report.
				d.state = dcDataCR
				if i < len(p) && p[i] == '\r' {
					i++
					d.state = dcDataLF
					if i < len(p) && p[i] == '\n' {
						i++
						d.state = dcSize
					}
				}
			}
			return data, i, nil
		}
		if d.state == dcDone {
			break
		}
		if err := d.frame(p[i]); err != nil {
			d.err = err
			return nil, i, err
		}
		i++
		if d.state == dcDone {
			break
		}
	}
	return nil, i, nil
}

// frame consumes one framing byte (any state but dcData and dcDone).
func (d *Dechunker) frame(c byte) error {
	switch d.state {
	case dcDataCR:
		if c != '\r' {
			return errChunkMalformed
		}
		d.state = dcDataLF
		return nil
	case dcDataLF:
		if c != '\n' {
			return errChunkMalformed
		}
		d.state = dcSize
		return nil
	}
	// A line's byte: the chunk-size line or a trailer line.
	d.line++
	if c != '\n' && d.line >= maxChunkLine {
		return errChunkLineTooLong
	}
	switch d.state {
	case dcSize:
		var v byte
		switch {
		case '0' <= c && c <= '9':
			v = c - '0'
		case 'a' <= c && c <= 'f':
			v = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			v = c - 'A' + 10
		case c == '\n':
			return errChunkBareLF
		case d.digits == 0 && (c == '\r' || c == ';' || c == ' ' || c == '\t'):
			// Nothing before the CR, the extension or trailing white
			// space ("  \r\n" trims to ""; " 1" keeps its space).
			if c == ' ' || c == '\t' {
				return errChunkBadSize
			}
			return errChunkEmptySize
		case c == '\r':
			d.state = dcSizeLF
			return nil
		case c == ';':
			d.state = dcExt
			return nil
		case c == ' ' || c == '\t':
			d.state = dcSizeOWS
			return nil
		default:
			return errChunkBadSize
		}
		if d.digits == 16 {
			return errChunkTooLarge
		}
		d.digits++
		d.n = d.n<<4 | uint64(v)
	case dcSizeOWS:
		// Go trims white space at the line's end before it cuts the
		// extension, so white space may only be trailing.
		switch c {
		case ' ', '\t':
		case '\r':
			d.state = dcSizeLF
		case '\n':
			return errChunkBareLF
		default:
			return errChunkBadSize
		}
	case dcExt:
		switch c {
		case '\r':
			d.state = dcSizeLF
		case '\n':
			return errChunkBareLF
		}
	case dcSizeLF:
		if c != '\n' {
			return errChunkCR
		}
		d.endSizeLine()
	case dcTrailerLine:
		switch c {
		case '\n':
			d.state = dcDone
		case '\r':
			d.state = dcTrailerCR
		default:
			d.state = dcTrailerText
		}
	case dcTrailerCR:
		if c == '\n' {
			d.state = dcDone
		} else {
			d.state = dcTrailerText
		}
	case dcTrailerText:
		if c == '\n' {
			d.line = 0
			d.state = dcTrailerLine
		}
	}
	if d.state == dcDone {
		d.line = 0
	}
	return d.err
}

// endSizeLine ends a valid chunk-size line: the accounting Go's
// chunkedReader.beginChunk does, then the data or the trailer.
func (d *Dechunker) endSizeLine() {
	// The line without its CRLF plus the CRLF after the data (d.line
	// counts the line's own CRLF, the same two bytes), less 16 and twice
	// the data. int64(d.n) wraps for sizes past 1<<63 as Go's does.
	d.excess += int64(d.line)
	d.excess -= 16 + 2*int64(d.n)
	d.excess = max(d.excess, 0)
	d.line, d.digits = 0, 0
	switch {
	case d.n == 0:
		// Go's EOF for the last chunk overrides its excess error.
		d.state = dcTrailerLine
	case d.excess > maxChunkExcess:
		d.err = errChunkExcess
	default:
		d.state = dcData
	}
}
