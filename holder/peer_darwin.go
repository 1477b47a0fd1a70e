package holder

import "golang.org/x/sys/unix"

// fdPeerUID is the peer's uid on a unix socket (LOCAL_PEERCRED, what
// getpeereid reads).
func fdPeerUID(fd int) (int, error) {
	cred, err := unix.GetsockoptXucred(fd, unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
	if err != nil {
		return 0, err
	}
	return int(cred.Uid), nil
}
