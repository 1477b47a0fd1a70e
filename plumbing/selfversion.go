package plumbing

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/butter-cloud/butter/helperapi"
)

var selfVersion = sync.OnceValues(func() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find own executable: %w", err)
	}
	return versionOf(exe)
})

// SelfVersion is VersionOf the running executable.
func SelfVersion() (string, error) { return selfVersion() }

// versionSuffix names the file beside an executable that keeps its
// version (versionOf).
const versionSuffix = ".version"

// versionOf is helperapi.VersionOf the file at path. It is kept beside the
// file (path+versionSuffix) with the file's size, modification time and
// inode, and read from there while those stay the same: every `helper
// serve` (each verb's connection, each spare the connection holder opens)
// would otherwise hash the 30 MiB binary again for its hello, about
// 100 ms of a core on a small machine, which the holder's verbs waited
// for. The kept version is taken only from a file of this user that no
// one else may write; one that cannot be written (a read-only folder) is
// no error: the version is computed each time, as before.
func versionOf(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("read own executable: %w", err)
	}
	stamp := fileStamp(fi)
	kept := path + versionSuffix
	if v, ok := readKeptVersion(kept, stamp); ok {
		return v, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("read own executable: %w", err)
	}
	defer f.Close()
	v, err := helperapi.VersionOf(f)
	if err != nil {
		return "", fmt.Errorf("read own executable: %w", err)
	}
	keepVersion(kept, stamp+" "+v+"\n")
	return v, nil
}

// fileStamp is what tells one file's content from another's without
// reading it: size, modification time and inode.
func fileStamp(fi os.FileInfo) string {
	var ino uint64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = uint64(st.Ino)
	}
	return fmt.Sprintf("%d/%d/%d", fi.Size(), fi.ModTime().UnixNano(), ino)
}

// readKeptVersion is the version kept in file for stamp.
func readKeptVersion(file, stamp string) (string, bool) {
	fi, err := os.Lstat(file)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o022 != 0 {
		return "", false
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != os.Geteuid() {
		return "", false
	}
	b, err := os.ReadFile(file)
	if err != nil || len(b) > 256 {
		return "", false
	}
	s, v, ok := strings.Cut(strings.TrimSpace(string(b)), " ")
	if !ok || s != stamp || len(v) != 16 || strings.Trim(v, "0123456789abcdef") != "" {
		return "", false
	}
	return v, true
}

// keepVersion writes line to file whole (a temporary file renamed over
// it), or not at all.
func keepVersion(file, line string) {
	tmp, err := os.CreateTemp(filepath.Dir(file), filepath.Base(file)+".*")
	if err != nil {
		return
	}
	_, err = tmp.WriteString(line)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), file)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
}
