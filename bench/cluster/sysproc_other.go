//go:build !linux

package cluster

import "syscall"

// serverSysProcAttr has no parent-death signal to ask for outside Linux;
// Close and t.Cleanup are then the only guard against leftover servers.
func serverSysProcAttr() *syscall.SysProcAttr { return nil }
