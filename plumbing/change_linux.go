package plumbing

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// putBackTimeout bounds putting the previous spec back after a failed
// Apply, even when the caller's ctx has ended.
const putBackTimeout = time.Minute

// Apply makes the machine match spec and keeps it, so that the daemon
// restores it after a restart. It adds before it deletes, touches only
// links named with Prefix, and may be called any number of times.
//
// Bad input is refused with helperapi.CodeInvalid and a spec behind the
// generation the machine holds with helperapi.CodeStale, both before
// anything changes. If applying fails part-way, Apply puts the machine
// back on the spec it held (with none, it tears down as Remove does) and
// returns helperapi.CodeApplyFailed.
//
// The spec is persisted once it has applied, not before: spec.json is
// always the last spec that applied whole. A daemon that dies mid-apply
// comes back (Restore) on that spec, which is known to work, rather than
// retrying for ever one that may not; a first Apply that dies leaves no
// spec, and Restore removes its links. The operator's call failed either
// way, so it sends the change again, and the generation check takes the
// retry. Facts never claim a generation the machine does not run.
func (h *Helper) Apply(ctx context.Context, spec helperapi.Spec) (helperapi.Report, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	held, hasHeld, err := h.admit(spec)
	if err != nil {
		return helperapi.Report{}, err
	}
	rep, err := h.apply(ctx, spec)
	if err != nil {
		return helperapi.Report{}, h.putBack(ctx, err, held, hasHeld, false)
	}
	if err := h.state.saveSpec(spec); err != nil {
		// The rename may have happened before the error: write the old
		// spec back too.
		return helperapi.Report{}, h.putBack(ctx, fmt.Errorf("persist spec: %w", err), held, hasHeld, true)
	}
	return rep, nil
}

// Prepare checks spec exactly as Apply does before it changes anything,
// and changes nothing.
func (h *Helper) Prepare(ctx context.Context, spec helperapi.Spec) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, _, err := h.admit(spec)
	return err
}

// admit reads the spec the machine holds and this machine's key, and
// decides whether it takes spec (see admit) and can build it (see
// buildable). It makes no key.
func (h *Helper) admit(spec helperapi.Spec) (helperapi.Spec, bool, error) {
	held, ok, err := h.state.spec()
	if err != nil {
		return helperapi.Spec{}, false, err
	}
	self := ""
	if k, has, err := h.state.key(); err != nil {
		return helperapi.Spec{}, false, err
	} else if has {
		self = k.PublicKey().String()
	}
	if err := admit(spec, self, held); err != nil {
		return held, ok, err
	}
	return held, ok, buildable(spec, machine{Gretap: h.links.capabilities().Gretap})
}

// putBack returns the machine to held, the spec it ran before an Apply
// that failed (hasHeld false: none, so it tears down as Remove does), and
// says so. rewrite: spec.json may have changed and is written back.
func (h *Helper) putBack(ctx context.Context, failed error, held helperapi.Spec, hasHeld, rewrite bool) error {
	h.log.Error("apply failed; putting the previous spec back", "err", failed)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), putBackTimeout)
	defer cancel()
	was := "its previous configuration"
	var err error
	if hasHeld {
		if held.Generation != 0 {
			was += fmt.Sprintf(" (generation %d)", held.Generation)
		}
		_, err = h.apply(ctx, held)
		if err == nil && rewrite {
			err = h.state.saveSpec(held)
		}
	} else {
		was += " (none: the links this apply made are removed)"
		err = h.teardown(ctx)
		if err == nil && rewrite {
			err = h.state.forgetSpec()
		}
	}
	if err != nil {
		h.log.Error("put the previous spec back", "err", err)
		return fmt.Errorf("apply failed: %w; putting the previous configuration back failed too: %v; "+
			"the machine is part-way between the two: apply a spec again, or remove", failed, err)
	}
	h.log.Info("back on the previous spec", "generation", held.Generation)
	return &helperapi.RemoteError{Code: helperapi.CodeApplyFailed,
		Message: fmt.Sprintf("apply failed: %v; the machine is back on %s", failed, was)}
}

// RotateKey gives the machine a new WireGuard key and returns its public
// key. The key file is replaced in one rename, no copy of the old key
// kept; if the WireGuard device exists, it takes the new key at once and
// keeps its port and peers. The peers reach the machine again once their
// specs carry the new public key.
func (h *Helper) RotateKey(ctx context.Context) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	k, err := h.state.newKey()
	if err != nil {
		return "", err
	}
	pub := k.PublicKey().String()
	_, err = h.wg.Device(WireGuardName)
	switch {
	case errors.Is(err, os.ErrNotExist):
		// No device yet: the next Apply makes it with the new key.
	case err != nil:
		return "", fmt.Errorf("rotate key: the new key (public %s) is saved, but read wireguard %q: %w; the next apply puts it to use",
			pub, WireGuardName, err)
	default:
		if err := h.wg.ConfigureDevice(WireGuardName, keyConfig(k)); err != nil {
			return "", fmt.Errorf("rotate key: the new key (public %s) is saved, but configure wireguard %q: %w; the next apply puts it to use",
				pub, WireGuardName, err)
		}
	}
	h.log.Info("rotated the wireguard key", "public_key", pub)
	return pub, nil
}

// keyConfig puts a new private key to use on the WireGuard device,
// leaving its port and peers as they are.
func keyConfig(k wgtypes.Key) wgtypes.Config { return wgtypes.Config{PrivateKey: &k} }

// Desired returns the cloud's desired state kept with the applied spec;
// zero when there is none.
func (h *Helper) Desired(ctx context.Context) (helperapi.Desired, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	spec, _, err := h.state.spec()
	if err != nil || spec.Desired == nil {
		return helperapi.Desired{}, err
	}
	return *spec.Desired, nil
}
