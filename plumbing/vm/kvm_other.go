//go:build !linux

package vm

// KVMAnswers is false: KVM is Linux only.
func KVMAnswers() bool { return false }

// kernelRelease is "": the helper runs on Linux only.
func kernelRelease() string { return "" }
