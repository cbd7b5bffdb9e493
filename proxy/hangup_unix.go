//go:build unix

package proxy

import (
	"errors"
	"net"
	"syscall"
)

// peerHungUp waits until conn is readable and reports whether the peer
// closed it; it returns false when data arrived, or on a read deadline, and
// consumes nothing.
func peerHungUp(conn net.Conn) bool {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	hungUp := false
	var one [1]byte
	_ = raw.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), one[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
			return false // not readable yet: wait
		}
		hungUp = err != nil || n == 0
		return true
	})
	return hungUp
}
