//go:build unix

package proxy

import (
	"errors"
	"net"
	"syscall"
)

// peerHungUp waits until conn is readable and reports whether the peer
// closed it; it returns false when data arrived, or on a read deadline, and
// consumes nothing. On a TLS connection the data may be the client's
// close_notify, which cannot be told from a command without reading it:
// there the watch goes on until the peer shuts its side (peerShutWrite) or
// the deadline.
func peerHungUp(conn net.Conn) bool {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	secure, _ := conn.(interface{ encrypted() bool })
	hungUp := false
	var one [1]byte
	_ = raw.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), one[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
			return false // not readable yet: wait
		}
		hungUp = err != nil || n == 0
		if !hungUp && secure != nil && secure.encrypted() {
			hungUp = peerShutWrite(int(fd))
			return hungUp
		}
		return true
	})
	return hungUp
}

// shutdown shuts the client's socket down in both directions, without
// closing its descriptor, which whoever serves the client still uses: that
// one then reads the end of the stream and ends the session.
func (c *client) shutdown() {
	if c.src.raw == nil {
		_ = c.nc.Close()
		return
	}
	_ = c.src.raw.Control(func(fd uintptr) { _ = syscall.Shutdown(int(fd), syscall.SHUT_RDWR) })
}
