package plumbing

import (
	"context"
	"fmt"

	"github.com/butter-cloud/butter/helperapi"
)

// applyGatewayFilter converges the bridge-family gateway filter for plan
// p. Like the firewall it comes before the links: its rules name ports
// that need not exist yet.
func (h *Helper) applyGatewayFilter(ctx context.Context, p plan) ([]string, error) {
	changes, err := convergeFirewall(ctx, nftTable{bridge: true}, gatewayFilter(p))
	if err != nil {
		return nil, fmt.Errorf("apply gateway filter: %w", err)
	}
	return changes, nil
}

// gatewayFilterDrift is how the gateway filter differs from p's.
func (h *Helper) gatewayFilterDrift(ctx context.Context, p plan) ([]helperapi.Drift, error) {
	have, err := nftTable{bridge: true}.Table(ctx)
	if err != nil {
		return nil, err
	}
	var out []helperapi.Drift
	for _, d := range fwDiff(gatewayFilter(p), have) {
		out = append(out, helperapi.Drift{Link: "gateway filter", Problem: d})
	}
	return out, nil
}

// removeGatewayFilter deletes the gateway filter's table, if there is one.
func (h *Helper) removeGatewayFilter(ctx context.Context) error {
	t := nftTable{bridge: true}
	have, err := t.Table(ctx)
	if err != nil || have == nil {
		return err
	}
	if err := t.Delete(ctx); err != nil {
		return err
	}
	h.log.Info("removed", "change", "gateway filter: table "+t.name())
	return nil
}
