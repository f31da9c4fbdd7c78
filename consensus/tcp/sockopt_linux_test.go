package tcp

import (
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// Connections get TCP_USER_TIMEOUT (so unacknowledged data fails the
// connection after about LivenessTimeout) and TCP keepalive.
func TestSocketOptions(t *testing.T) {
	tr, _ := newTransport(t, 1, fastLiveness)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tr.tuneConn(c)
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var timeout, keepalive int
	var gerr error
	rc.Control(func(fd uintptr) {
		timeout, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
		if gerr == nil {
			keepalive, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE)
		}
	})
	if gerr != nil {
		t.Fatal(gerr)
	}
	if want := int(max(tr.cfg.LivenessTimeout, tr.cfg.IOTimeout).Milliseconds()); timeout != want {
		t.Fatalf("TCP_USER_TIMEOUT = %d ms, want %d", timeout, want)
	}
	if keepalive != 1 {
		t.Fatalf("SO_KEEPALIVE = %d", keepalive)
	}
}
