package plumbing

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNFTScript(t *testing.T) {
	tab := fwTable{Chains: []fwChain{{Name: ChainInput, Hook: "input", Policy: VerdictAccept,
		Rules: []fwRule{{IIF: "btbr1", Verdict: VerdictDrop}}},
		{Name: "egress-nat", Type: "nat", Hook: "postrouting", Priority: 100, Policy: VerdictAccept}}}
	want := `nft -f - <<'EOF'
table inet butter
delete table inet butter
table inet butter {
  chain input {
    type filter hook input priority 0; policy accept;
    iifname "btbr1" drop
  }
  chain egress-nat {
    type nat hook postrouting priority 100; policy accept;
  }
}
EOF`
	if d := cmp.Diff(want, nftScript(tab)); d != "" {
		t.Errorf("script (-want +got):\n%s", d)
	}
}
