package main

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The RESP2 server: it reads commands from clients, hands every batch of
// commands that arrived together to a handler, and writes the replies.
//
// Every length a client announces is checked before anything is allocated
// for it, and buffers grow only as bytes arrive: a connection holds at most
// one request (respConfig.MaxRequest) of input and respConfig.MaxPending
// plus one reply (at most respConfig.MaxReply) of output. A request that
// stays incomplete for ReadTimeout is dropped with its connection; a
// client that does not take its replies within WriteTimeout is closed.
// Protocol errors are answered with Redis's error text and close the
// connection after the reply, as Redis does.

// Protocol limits and defaults of the RESP server.
const (
	// respMaxInline is the longest inline command line (Redis's
	// PROTO_INLINE_MAX_SIZE).
	respMaxInline = 64 << 10
	// respMaxArgs bounds a multibulk count whatever the request limit
	// (Redis's historical 1024*1024).
	respMaxArgs = 1 << 20
	// respMaxHeader bounds a "*<count>" or "$<length>" line; a valid one
	// has at most 20 digits.
	respMaxHeader = 32
	// respInitialBuffer is a connection's first read buffer.
	respInitialBuffer = 4 << 10
	// respDefaultMaxPending is the output a connection gathers before it
	// writes to the client in the middle of a batch.
	respDefaultMaxPending = 64 << 10
	// respDefaultReadTimeout bounds the time from the first byte of a
	// request to its last.
	respDefaultReadTimeout = 30 * time.Second
	// respDefaultWriteTimeout bounds one write of replies.
	respDefaultWriteTimeout = 30 * time.Second
)

// Replies of the RESP server itself.
var (
	respErrMaxClients     = []byte("-ERR max number of clients reached\r\n")
	respErrReplyTooLarge  = []byte("-ERR reply too large\r\n")
	respErrRequestTooBig  = []byte("-ERR request exceeds the size limit\r\n")
	respErrMultibulkLen   = []byte("-ERR Protocol error: invalid multibulk length\r\n")
	respErrBulkLen        = []byte("-ERR Protocol error: invalid bulk length\r\n")
	respErrInlineTooBig   = []byte("-ERR Protocol error: too big inline request\r\n")
	respErrMbulkCountStr  = []byte("-ERR Protocol error: too big mbulk count string\r\n")
	respErrBulkCountStr   = []byte("-ERR Protocol error: too big bulk count string\r\n")
	respErrUnbalanced     = []byte("-ERR Protocol error: unbalanced quotes in request\r\n")
	respErrBulkTerminator = []byte("-ERR Protocol error: expected '\\r\\n' after bulk data\r\n")
)

// errRESPProtocol is the error of a client that broke the protocol; the
// reply it got is in the respProtocolError.
var errRESPProtocol = errors.New("kvnode: RESP protocol error")

// respProtocolError carries the reply for a protocol error.
type respProtocolError struct{ reply []byte }

func (e *respProtocolError) Error() string {
	return errRESPProtocol.Error() + ": " + string(bytes.TrimSpace(e.reply[1:]))
}
func (e *respProtocolError) Unwrap() error { return errRESPProtocol }

func protoErr(reply []byte) error { return &respProtocolError{reply: reply} }

// respConfig bounds what one client can make the server hold and wait for.
// Zero fields take the defaults documented on them.
type respConfig struct {
	MaxConns     int           // open connections; zero: unlimited
	MaxRequest   int           // wire bytes of one command; zero: defaultMaxRequest
	MaxReply     int           // bytes of one reply; zero: 8 × MaxRequest
	MaxPending   int           // output gathered before writing; zero: respDefaultMaxPending
	ReadTimeout  time.Duration // first to last byte of a request; zero: respDefaultReadTimeout
	IdleTimeout  time.Duration // between requests; zero: idle connections stay open
	WriteTimeout time.Duration // one write of replies; zero: respDefaultWriteTimeout
}

func (c respConfig) withDefaults() respConfig {
	if c.MaxRequest <= 0 {
		c.MaxRequest = defaultMaxRequest
	}
	if c.MaxReply <= 0 {
		c.MaxReply = 8 * c.MaxRequest
	}
	if c.MaxPending <= 0 {
		c.MaxPending = respDefaultMaxPending
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = respDefaultReadTimeout
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = respDefaultWriteTimeout
	}
	return c
}

// maxArgs is the largest multibulk count: each argument takes at least
// four bytes on the wire ("$0\r\n").
func (c respConfig) maxArgs() int { return min(respMaxArgs, c.MaxRequest/4+1) }

// respHandler executes a batch of commands that arrived together on one
// connection, in order, answering each through c.reply. The arguments
// are valid only until it returns.
type respHandler func(c *respConn, cmds [][][]byte)

// respServer serves RESP2 clients. Serve runs one goroutine per
// connection; Close stops them and Serve returns once all have exited.
type respServer struct {
	cfg      respConfig
	handler  respHandler
	newState func(net.Conn) (*connState, []byte) // nil: a zero connState; a reply refuses the connection

	slots chan struct{} // connection slots; nil: unlimited
	wg    sync.WaitGroup

	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]struct{}
	closed bool

	stats respStats
}

// respStats counts what the server did; the peaks show the memory a
// connection's buffers reached.
type respStats struct {
	accepted       atomic.Int64
	refused        atomic.Int64 // over MaxConns
	protocolErrors atomic.Int64
	timeouts       atomic.Int64 // incomplete requests and stalled writes
	peakInput      atomic.Int64 // largest input buffer of a connection
	peakOutput     atomic.Int64 // largest output buffer of a connection
}

func newRESPServer(cfg respConfig, handler respHandler, newState func(net.Conn) (*connState, []byte)) *respServer {
	s := &respServer{cfg: cfg.withDefaults(), handler: handler, newState: newState, conns: map[net.Conn]struct{}{}}
	if cfg.MaxConns > 0 {
		s.slots = make(chan struct{}, cfg.MaxConns)
	}
	return s
}

var errRESPClosed = errors.New("kvnode: RESP server closed")

// Serve accepts connections on ln (a TLS listener works as well) until
// Close, then waits for every connection's goroutine to exit. It closes ln.
func (s *respServer) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return errRESPClosed
	}
	s.ln = ln
	s.mu.Unlock()
	defer s.wg.Wait()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return errRESPClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of descriptors or a transient network error: back off
			// and keep serving.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			time.Sleep(delay)
			continue
		}
		delay = 0
		s.serveConn(nc)
	}
}

// serveConn takes a connection slot for nc and serves it on its own
// goroutine, or refuses nc when every slot is taken.
func (s *respServer) serveConn(nc net.Conn) {
	if s.slots != nil {
		select {
		case s.slots <- struct{}{}:
		default:
			s.stats.refused.Add(1)
			nc.SetWriteDeadline(time.Now().Add(time.Second))
			nc.Write(respErrMaxClients)
			nc.Close()
			return
		}
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		nc.Close()
		s.release()
		return
	}
	s.conns[nc] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	s.stats.accepted.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.release()
		defer func() {
			s.mu.Lock()
			delete(s.conns, nc)
			s.mu.Unlock()
			nc.Close()
		}()
		var st *connState
		if s.newState != nil {
			var refusal []byte
			if st, refusal = s.newState(nc); refusal != nil {
				s.stats.refused.Add(1)
				nc.SetWriteDeadline(time.Now().Add(time.Second))
				nc.Write(refusal)
				return
			}
		}
		if st == nil {
			st = &connState{}
		}
		c := &respConn{srv: s, nc: nc, state: st}
		c.serve()
	}()
}

func (s *respServer) release() {
	if s.slots != nil {
		<-s.slots
	}
}

// open is the number of connections being served.
func (s *respServer) open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Close stops accepting and closes every connection; commands being
// executed finish, their replies are dropped. Serve returns once every
// connection's goroutine has exited.
func (s *respServer) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.ln != nil {
		s.ln.Close()
	}
	for nc := range s.conns {
		nc.Close()
	}
	return nil
}

// respConn is one client connection: its input parser, its pending
// replies and the connection's state for the command handler.
type respConn struct {
	srv   *respServer
	nc    net.Conn
	state *connState

	p          respParser
	out        []byte
	err        error // the first write error: later replies are dropped
	closeAfter bool  // close once the current batch is answered

	readDeadline time.Time // as last set on nc
}

// reply queues one reply. A reply over MaxReply is replaced by an error;
// queued output over MaxPending is written at once.
func (c *respConn) reply(b []byte) {
	if c.err != nil {
		return
	}
	if len(b) > c.srv.cfg.MaxReply {
		b = respErrReplyTooLarge
	}
	if len(b) >= c.srv.cfg.MaxPending {
		// A large reply is written as it is, not copied.
		c.flush()
		c.write(b)
		return
	}
	c.out = append(c.out, b...)
	if len(c.out) >= c.srv.cfg.MaxPending {
		c.flush()
	}
}

// broken reports whether a write to the client failed: its replies are
// dropped and the connection closes after the current batch.
func (c *respConn) broken() bool { return c.err != nil }

// closeAfterReply closes the connection once the replies queued so far
// are written (QUIT).
func (c *respConn) closeAfterReply() { c.closeAfter = true }

// flush writes the queued replies.
func (c *respConn) flush() {
	if len(c.out) == 0 {
		return
	}
	if n := int64(cap(c.out)); n > c.srv.stats.peakOutput.Load() {
		peakMax(&c.srv.stats.peakOutput, n)
	}
	c.write(c.out)
	c.out = c.out[:0]
}

// write writes b within WriteTimeout; a client that does not take it in
// time is closed.
func (c *respConn) write(b []byte) {
	if c.err != nil {
		return
	}
	c.nc.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout))
	if _, err := c.nc.Write(b); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.srv.stats.timeouts.Add(1)
		}
		c.err = err
	}
}

func peakMax(v *atomic.Int64, n int64) {
	for {
		cur := v.Load()
		if n <= cur || v.CompareAndSwap(cur, n) {
			return
		}
	}
}

// serve reads, executes and answers batches of commands until the client
// leaves, breaks the protocol or times out.
func (c *respConn) serve() {
	cfg := &c.srv.cfg
	c.p.init(cfg)
	for {
		cmds, perr := c.p.parse()
		if len(cmds) > 0 {
			c.srv.handler(c, cmds)
		}
		if perr != nil {
			c.srv.stats.protocolErrors.Add(1)
			var pe *respProtocolError
			if errors.As(perr, &pe) {
				c.reply(pe.reply)
			}
			c.closeAfter = true
		}
		c.flush()
		if c.err != nil || c.closeAfter {
			return
		}
		c.p.compact()
		// A request under way must complete within ReadTimeout of its
		// first byte; between requests the connection may idle.
		var dl time.Time
		switch {
		case c.p.partial():
			dl = c.p.began.Add(cfg.ReadTimeout)
		case cfg.IdleTimeout > 0:
			dl = time.Now().Add(cfg.IdleTimeout)
		}
		// The idle deadline moves at most once a second: a busy
		// connection does not reset its timer for every batch.
		if !dl.Equal(c.readDeadline) && (dl.IsZero() || c.readDeadline.IsZero() || dl.Before(c.readDeadline) || dl.Sub(c.readDeadline) > time.Second) {
			c.nc.SetReadDeadline(dl)
			c.readDeadline = dl
		}
		if err := c.p.fill(c.nc); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.srv.stats.timeouts.Add(1)
			}
			var pe *respProtocolError
			if errors.As(err, &pe) {
				c.srv.stats.protocolErrors.Add(1)
				c.reply(pe.reply)
				c.flush()
			}
			return
		}
		if n := int64(cap(c.p.buf)); n > c.srv.stats.peakInput.Load() {
			peakMax(&c.srv.stats.peakInput, n)
		}
	}
}

// respParser reads RESP2 commands (multibulk and inline) from a buffer
// that grows only as bytes arrive. The state of a command that is not
// complete yet is kept between reads, so no byte is parsed twice.
type respParser struct {
	maxRequest int
	maxBulk    int
	maxArgs    int

	buf   []byte
	n     int       // buf[:n] holds the bytes read
	start int       // first byte of the current command
	pos   int       // next byte to parse
	began time.Time // when the current command's first byte arrived

	// The current command.
	kind  byte     // 0: none yet, '*': multibulk, 'i': inline
	left  int      // multibulk: arguments still to read
	bulk  int      // multibulk: length of the bulk being read, -1: header next
	spans [][2]int // multibulk: the arguments read so far, as buf offsets

	cmds [][][]byte // the batch returned by parse, reused
	argv [][]byte   // the batch's arguments, reused
}

func (p *respParser) init(cfg *respConfig) {
	p.maxRequest = cfg.MaxRequest
	p.maxBulk = cfg.MaxRequest
	p.maxArgs = cfg.maxArgs()
	p.bulk = -1
}

// partial reports whether a command has begun and is not complete.
func (p *respParser) partial() bool { return p.n > p.start }

// fill reads more bytes, growing the buffer when the command under way
// fills it.
func (p *respParser) fill(r io.Reader) error {
	if p.buf == nil {
		p.buf = make([]byte, respInitialBuffer)
	}
	if p.n == len(p.buf) {
		// Only the current command is in the buffer (compact ran): parse
		// keeps it within MaxRequest (or an inline line within
		// respMaxInline) plus a header line.
		size := min(2*len(p.buf), max(p.maxRequest, respMaxInline)+2*respMaxHeader)
		if size <= len(p.buf) {
			return protoErr(respErrRequestTooBig)
		}
		nb := make([]byte, size)
		copy(nb, p.buf[:p.n])
		p.buf = nb
	}
	wasPartial := p.partial()
	k, err := r.Read(p.buf[p.n:])
	if k > 0 && !wasPartial {
		p.began = time.Now()
	}
	p.n += k
	if k > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// compact moves the unparsed bytes to the front of the buffer, and lets a
// large buffer go once the command that needed it is done.
func (p *respParser) compact() {
	if p.start == 0 {
		return
	}
	rest := p.n - p.start
	if len(p.buf) > 4*respInitialBuffer && rest <= respInitialBuffer/2 {
		nb := make([]byte, respInitialBuffer)
		copy(nb, p.buf[p.start:p.n])
		p.buf = nb
	} else {
		copy(p.buf, p.buf[p.start:p.n])
	}
	shift := p.start
	for i := range p.spans {
		p.spans[i][0] -= shift
		p.spans[i][1] -= shift
	}
	p.pos -= shift
	p.n = rest
	p.start = 0
}

// parse returns the complete commands in the buffer, and the protocol
// error that ends the connection after them, if any.
func (p *respParser) parse() ([][][]byte, error) {
	p.cmds, p.argv = p.cmds[:0], p.argv[:0]
	for p.pos < p.n {
		args, done, err := p.next()
		if err != nil {
			return p.cmds, err
		}
		if !done {
			break
		}
		if len(args) > 0 {
			p.cmds = append(p.cmds, args)
		}
	}
	return p.cmds, nil
}

// next continues the current command; done reports whether it is
// complete (args is empty for an empty command, which is skipped).
func (p *respParser) next() (args [][]byte, done bool, err error) {
	if p.kind == 0 {
		if p.buf[p.pos] == '*' {
			p.kind = '*'
		} else {
			p.kind = 'i'
		}
	}
	if p.kind == 'i' {
		return p.inline()
	}
	if p.left == 0 && len(p.spans) == 0 && p.bulk == -1 && p.pos == p.start {
		line, ok, err := p.header(respErrMbulkCountStr)
		if !ok || err != nil {
			return nil, false, err
		}
		count, ok := parseRESPInt(line[1:], p.maxArgs)
		if !ok {
			return nil, false, protoErr(respErrMultibulkLen)
		}
		if count <= 0 {
			p.endCommand()
			return nil, true, nil
		}
		p.left = count
	}
	for p.left > 0 {
		if p.bulk == -1 {
			if p.pos >= p.n {
				return nil, false, nil
			}
			if p.buf[p.pos] != '$' {
				return nil, false, protoErr([]byte("-ERR Protocol error: expected '$', got '" + printable(p.buf[p.pos]) + "'\r\n"))
			}
			line, ok, err := p.header(respErrBulkCountStr)
			if !ok || err != nil {
				return nil, false, err
			}
			l, ok := parseRESPInt(line[1:], p.maxBulk)
			if !ok || l < 0 {
				return nil, false, protoErr(respErrBulkLen)
			}
			if p.pos-p.start+l+2 > p.maxRequest {
				return nil, false, protoErr(respErrRequestTooBig)
			}
			p.bulk = l
		}
		if p.n-p.pos < p.bulk+2 {
			return nil, false, nil
		}
		if p.buf[p.pos+p.bulk] != '\r' || p.buf[p.pos+p.bulk+1] != '\n' {
			return nil, false, protoErr(respErrBulkTerminator)
		}
		p.spans = append(p.spans, [2]int{p.pos, p.pos + p.bulk})
		p.pos += p.bulk + 2
		p.bulk = -1
		p.left--
	}
	base := len(p.argv)
	for _, s := range p.spans {
		p.argv = append(p.argv, p.buf[s[0]:s[1]:s[1]])
	}
	p.endCommand()
	return p.argv[base:len(p.argv):len(p.argv)], true, nil
}

// header reads a "*<n>\r\n" or "$<n>\r\n" line at pos.
func (p *respParser) header(tooLong []byte) (line []byte, ok bool, err error) {
	end := min(p.n, p.pos+respMaxHeader)
	i := bytes.IndexByte(p.buf[p.pos:end], '\n')
	if i < 0 {
		if end-p.pos >= respMaxHeader {
			return nil, false, protoErr(tooLong)
		}
		return nil, false, nil
	}
	line = p.buf[p.pos : p.pos+i]
	p.pos += i + 1
	if len(line) < 2 || line[len(line)-1] != '\r' {
		if line[0] == '*' {
			return nil, false, protoErr(respErrMultibulkLen)
		}
		return nil, false, protoErr(respErrBulkLen)
	}
	return line[:len(line)-1], true, nil
}

func (p *respParser) endCommand() {
	p.kind, p.left, p.bulk = 0, 0, -1
	p.spans = p.spans[:0]
	p.start = p.pos
}

// inline reads a command line; pos is where the search for its end
// resumes, so a line arriving in pieces is scanned once.
func (p *respParser) inline() ([][]byte, bool, error) {
	i := bytes.IndexByte(p.buf[p.pos:p.n], '\n')
	if i < 0 {
		p.pos = p.n
		if p.n-p.start > respMaxInline {
			return nil, false, protoErr(respErrInlineTooBig)
		}
		return nil, false, nil
	}
	end := p.pos + i
	if end-p.start > respMaxInline {
		return nil, false, protoErr(respErrInlineTooBig)
	}
	line := p.buf[p.start:end]
	p.pos = end + 1
	args, ok := splitInline(line)
	if !ok {
		return nil, false, protoErr(respErrUnbalanced)
	}
	p.endCommand()
	return args, true, nil
}

// splitInline splits an inline command line into arguments as Redis does
// (sdssplitargs): spaces separate, "double quotes" take \n \r \t \b \a
// \\ \" and \xHH escapes, 'single quotes' take \', and a closing quote
// must be followed by a space or the end. It runs in linear time.
func splitInline(line []byte) ([][]byte, bool) {
	var args [][]byte
	i := 0
	for {
		for i < len(line) && isSpace(line[i]) {
			i++
		}
		if i == len(line) {
			return args, true
		}
		var cur []byte
		inq, insq := false, false
		for done := false; !done; i++ {
			switch {
			case inq:
				switch {
				case i == len(line):
					return nil, false
				case line[i] == '\\' && i+3 < len(line) && line[i+1] == 'x' && isHex(line[i+2]) && isHex(line[i+3]):
					cur = append(cur, unhex(line[i+2])<<4|unhex(line[i+3]))
					i += 3
				case line[i] == '\\' && i+1 < len(line):
					i++
					switch c := line[i]; c {
					case 'n':
						cur = append(cur, '\n')
					case 'r':
						cur = append(cur, '\r')
					case 't':
						cur = append(cur, '\t')
					case 'b':
						cur = append(cur, '\b')
					case 'a':
						cur = append(cur, '\a')
					default:
						cur = append(cur, c)
					}
				case line[i] == '"':
					if i+1 < len(line) && !isSpace(line[i+1]) {
						return nil, false
					}
					done = true
				default:
					cur = append(cur, line[i])
				}
			case insq:
				switch {
				case i == len(line):
					return nil, false
				case line[i] == '\\' && i+1 < len(line) && line[i+1] == '\'':
					cur = append(cur, '\'')
					i++
				case line[i] == '\'':
					if i+1 < len(line) && !isSpace(line[i+1]) {
						return nil, false
					}
					done = true
				default:
					cur = append(cur, line[i])
				}
			default:
				switch {
				case i == len(line) || isSpace(line[i]):
					done = true
				case line[i] == '"':
					inq = true
				case line[i] == '\'':
					insq = true
				default:
					cur = append(cur, line[i])
				}
			}
		}
		if cur == nil {
			cur = []byte{}
		}
		args = append(args, cur)
		if i > len(line) {
			return args, true
		}
	}
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\v' || c == '\f'
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// parseRESPInt parses a length as Redis's string2ll does (no sign but
// '-', no leading zeros), refusing values over limit without overflowing.
func parseRESPInt(b []byte, limit int) (int, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 20 || (b[0] == '0' && (len(b) > 1 || neg)) {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
		if n > limit {
			if neg {
				return -1, true // any negative count or length means "none"
			}
			return 0, false
		}
	}
	if neg {
		return -n, true
	}
	return n, true
}

// printable is a byte as Redis prints it in "expected '$', got 'x'".
func printable(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return string(rune(c))
	}
	return `\x` + strconv.FormatUint(uint64(c)|0x100, 16)[1:]
}
