//go:build !linux

package demo

import "syscall"

// serveProcAttr: no parent-death signal outside Linux.
func serveProcAttr() *syscall.SysProcAttr { return nil }
