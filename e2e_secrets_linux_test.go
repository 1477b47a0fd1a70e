package main

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// keyForms are the ways a WireGuard private key can be written: base64 as
// wg and the key file have it, and hex as the UAPI (wireguard-go's IPC
// "private_key=") has it.
func keyForms(k wgtypes.Key) []string {
	return []string{k.String(), hex.EncodeToString(k[:])}
}

// findKeys greps texts (what name → content) for every form of each
// machine's private key and lists where one appears.
func findKeys(keys map[string]wgtypes.Key, texts map[string][]byte) []string {
	var found []string
	for m, k := range keys {
		for _, form := range keyForms(k) {
			for name, b := range texts {
				if bytes.Contains(bytes.ToLower(b), []byte(strings.ToLower(form))) {
					found = append(found, fmt.Sprintf("%s's private key in %s", m, name))
				}
			}
		}
	}
	sort.Strings(found)
	return found
}
