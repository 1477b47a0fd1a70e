//go:build !linux

package vm

func kvmAnswers() bool { return false }
