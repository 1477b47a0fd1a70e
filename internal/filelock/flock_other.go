//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package filelock

import "os"

func tryLock(*os.File) error { return ErrUnsupported }

func unlockFile(*os.File) error { return nil }
