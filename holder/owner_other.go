//go:build !unix

package holder

import "io/fs"

func ownerOf(fi fs.FileInfo) (int, bool) { return 0, false }

func inodeOf(fi fs.FileInfo) uint64 { return 0 }
