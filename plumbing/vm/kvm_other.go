//go:build !linux

package vm

// KVMAnswers is false: KVM is Linux only.
func KVMAnswers() bool { return false }
