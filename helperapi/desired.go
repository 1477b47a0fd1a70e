package helperapi

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
)

// Desired is the whole cloud's desired state as the operator last wrote
// it. Every helper keeps the copy that came with its newest spec, so a
// lost inventory can be rebuilt from any machine (`butter adopt`). It
// holds no secret and no path of the operator's computer: public keys,
// addresses and allocations only.
type Desired struct {
	// Generation counts the cloud's changes: each change is the previous
	// generation plus one.
	Generation int64            `json:"generation"`
	Mesh       DesiredMesh      `json:"mesh"`
	Machines   []DesiredMachine `json:"machines,omitempty"`
	Networks   []DesiredNetwork `json:"networks,omitempty"`
	VMs        []DesiredVM      `json:"vms,omitempty"`
}

// DesiredMesh is the mesh's address range and port.
type DesiredMesh struct {
	Prefix netip.Prefix `json:"prefix"`
	Port   int          `json:"port"`
}

// DesiredMachine is a machine of the cloud, as the operator reaches it.
type DesiredMachine struct {
	Name      string     `json:"name"`
	Address   string     `json:"address"`
	Port      int        `json:"port,omitempty"`
	User      string     `json:"user,omitempty"`
	Endpoint  string     `json:"endpoint,omitempty"`
	NAT       bool       `json:"nat,omitempty"`
	MeshIP    netip.Addr `json:"mesh_ip,omitzero"`
	PublicKey string     `json:"public_key,omitempty"`
	Accel     string     `json:"accel,omitempty"`
}

// DesiredNetwork is a private network and its member machines.
type DesiredNetwork struct {
	Name     string       `json:"name"`
	Subnet   netip.Prefix `json:"subnet"`
	ID       int          `json:"id"`
	Tunnel   string       `json:"tunnel,omitempty"`
	Machines []string     `json:"machines,omitempty"`
	Egress   bool         `json:"egress,omitempty"`
}

// DesiredVM is a VM's place and address.
type DesiredVM struct {
	Name    string     `json:"name"`
	Machine string     `json:"machine"`
	Network string     `json:"network"`
	Address netip.Addr `json:"address"`
}

// Digest is a short hash of the desired state's content (generation
// included): two operators' different changes from the same generation
// have different digests.
func (d *Desired) Digest() string {
	if d == nil {
		return ""
	}
	b, _ := json.Marshal(d)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// CheckGeneration decides whether a machine that holds generation held
// (with desired state digest heldDigest) takes spec: a newer generation,
// or the same one with the same content (a retry), yes; an older one, or
// the same generation with other content (another operator's change from
// the same base), no: that would undo someone's work. A spec without a
// generation (0) is a bare spec of the test tiers and is always taken.
func CheckGeneration(spec Spec, held int64, heldDigest string) error {
	if spec.Generation == 0 || held == 0 {
		return nil
	}
	switch {
	case spec.Generation < held:
		return &RemoteError{Code: CodeStale, Message: fmt.Sprintf(
			"this machine is at generation %d of the cloud, newer than this change's %d: another butter changed the cloud; "+
				"take its state first with `butter adopt --address <a machine>`, then make the change again", held, spec.Generation)}
	case spec.Generation == held && spec.Desired.Digest() != heldDigest:
		return &RemoteError{Code: CodeStale, Message: fmt.Sprintf(
			"this machine holds another butter's change as generation %d: the cloud changed since your inventory was written; "+
				"take its state first with `butter adopt --address <a machine>`, then make the change again", held)}
	}
	return nil
}

// Error codes the helper answers with, beside JSON-RPC's own.
const (
	// CodeInvalid: the request is bad input; nothing changed.
	CodeInvalid int64 = -32010
	// CodeStale: the machine holds a newer generation of the cloud than
	// the request; nothing changed.
	CodeStale int64 = -32011
	// CodeApplyFailed: applying failed part-way; the machine is back on
	// the spec it had.
	CodeApplyFailed int64 = -32012
)

// RemoteError is a helper's refusal or failure, with its code.
type RemoteError struct {
	Code    int64  `json:"code"`
	Message string `json:"message"`
}

func (e *RemoteError) Error() string { return e.Message }

// IsInvalid tells a refusal of bad input (nothing changed).
func IsInvalid(err error) bool { return hasCode(err, CodeInvalid) }

// IsStale tells a refusal because the machine is ahead of the request.
func IsStale(err error) bool { return hasCode(err, CodeStale) }

func hasCode(err error, code int64) bool {
	var re *RemoteError
	return errors.As(err, &re) && re.Code == code
}
