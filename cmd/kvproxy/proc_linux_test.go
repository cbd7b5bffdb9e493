package main

import "syscall"

// childProcAttr makes a child get SIGKILL when the test process dies, so a
// test killed by its timeout leaves no proxy behind.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
