//go:build !linux

package vm

import "syscall"

// KVMAnswers is false: KVM is Linux only.
func KVMAnswers() bool { return false }

// kernelRelease is "": the helper runs on Linux only.
func kernelRelease() string { return "" }

// probeProcAttr is nil: the helper runs on Linux only.
func probeProcAttr() *syscall.SysProcAttr { return nil }
