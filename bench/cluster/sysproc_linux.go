package cluster

import "syscall"

// serverSysProcAttr makes the kernel SIGKILL a server when the thread that
// started it dies, so a crashed test binary leaves no redis-server behind.
func serverSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
