//go:build !linux

package tcp

import (
	"net"
	"time"
)

// setUserTimeout does nothing where TCP_USER_TIMEOUT is not available; the
// keepalive frames still detect a stalled stream.
func setUserTimeout(*net.TCPConn, time.Duration) {}
