//go:build !linux

package main

import "syscall"

// childProcAttr has no parent-death signal to set outside Linux; the tests'
// t.Cleanup still kills the child.
func childProcAttr() *syscall.SysProcAttr { return nil }
