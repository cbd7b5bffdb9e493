package proxy

import "golang.org/x/sys/unix"

// peerShutWrite reports whether the peer of socket fd shut down its sending
// side (its FIN arrived), even with unread data before it.
func peerShutWrite(fd int) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n > 0 && fds[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0
}
