package holder

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// connKey identifies how req reaches and trusts its machine: the request's
// address, port, user, identity and SSH options, and the identity (size,
// time, inode) of every file a dial reads to trust or reach it (known_hosts
// files, the ssh config, the identity files). Any change is a new key, so
// a held connection is never used for a changed entry or a changed host
// key.
func connKey(req Request) (string, error) {
	files := append([]string{req.Dial.KnownHosts, req.Dial.SSHConfig}, req.Dial.IdentityFiles...)
	files = append(files, req.Dial.UserKnownHosts...)
	if req.Dial.UserKnownHosts == nil {
		if home, err := os.UserHomeDir(); err == nil {
			files = append(files, filepath.Join(home, ".ssh", "known_hosts"), filepath.Join(home, ".ssh", "known_hosts2"),
				filepath.Join(home, ".ssh", "config"))
		}
		files = append(files, "/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_config")
	}
	stamps := map[string]string{}
	for _, f := range files {
		if f == "" || f == "none" {
			continue
		}
		fi, err := os.Stat(f)
		if err != nil {
			stamps[f] = "absent"
			continue
		}
		stamps[f] = fmt.Sprintf("%d/%d/%d", fi.Size(), fi.ModTime().UnixNano(), inodeOf(fi))
	}
	// The connect timeout is the verb's patience, not the machine's entry.
	d := req.Dial
	d.ConnectTimeout = 0
	b, err := json.Marshal(struct {
		Host    string
		Dial    Dial
		Helpers any
		Files   map[string]string
	}{req.Host, d, req.Helpers, stamps})
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}
