package kvsim

import (
	"errors"
	"net"
	"syscall"
	"time"
)

// watchPeerClose reports, by closing closed, that the client closed its end
// of conn while the connection's own goroutine is not reading it (it is
// blocked in a command). It peeks, so the bytes of a command the client
// sends meanwhile stay for redcon, and watching ends at the first such byte.
// stop ends the watch and returns once the watching goroutine has.
func watchPeerClose(conn net.Conn) (closed <-chan struct{}, stop func()) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil, func() {}
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, func() {}
	}
	peerClosed := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		eof := false
		var buf [1]byte
		// RawConn.Read calls the function again each time the socket
		// becomes readable, until it returns true or the read deadline
		// passes.
		err := raw.Read(func(fd uintptr) bool {
			n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
				return false
			}
			eof = n == 0 || err != nil
			return true
		})
		if err == nil && eof {
			close(peerClosed)
		}
	}()
	return peerClosed, func() {
		_ = conn.SetReadDeadline(time.Unix(1, 0))
		<-done
		_ = conn.SetReadDeadline(time.Time{})
	}
}
