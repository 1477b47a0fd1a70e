package cloud

import (
	"fmt"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/inventory"
)

// Link states.
const (
	LinkOK      = "ok"
	LinkDown    = "down"
	LinkUnknown = "unknown" // neither end answers
)

// LinkStatus is one pair of a network's member machines, as their helpers'
// WireGuard peers see it.
type LinkStatus struct {
	A string `json:"a"`
	B string `json:"b"`
	// Via is the machine that relays between A and B (both behind NAT);
	// empty when they reach each other directly.
	Via string `json:"via,omitempty"`
	// HandshakeAge is the seconds since the freshest handshake either end
	// saw (through a relay: the older of the two legs), -1 if none.
	HandshakeAge float64 `json:"handshake_age_seconds"`
	// BytesAB and BytesBA are what A's WireGuard sent to B and received
	// from it (B's own count when A does not answer); a relayed pair has
	// none of its own, its bytes are counted on the legs.
	BytesAB int64 `json:"bytes_a_to_b"`
	BytesBA int64 `json:"bytes_b_to_a"`
	// RTTMillis is the round trip of the helpers' last small echo through
	// the tunnel, -1 when none was answered or made.
	RTTMillis float64 `json:"rtt_ms"`
	// FullSize is the size in bytes of the full-size echo (don't fragment)
	// and FullSizeOK whether it crossed; 0 and false before any echo.
	FullSize   int    `json:"full_size,omitempty"`
	FullSizeOK bool   `json:"full_size_ok"`
	State      string `json:"state"`
	// Why says in words what is wrong when the link is not ok.
	Why string `json:"why,omitempty"`
}

// Failed says the link is known to be broken.
func (l LinkStatus) Failed() bool { return l.State == LinkDown }

// NetworkLinks is every pair of network's member machines, in the order
// of the members: whether they reach each other directly or through a
// relay (from the specs the helpers hold, Specs), the last handshake and
// the bytes each way (from the machines' facts), and, for a broken link,
// why in words.
func NetworkLinks(inv *inventory.Inventory, machines []MachineStatus, network string) ([]LinkStatus, error) {
	n, ok := inv.Network(network)
	if !ok {
		return nil, fmt.Errorf("no network %q; `butter network list` shows them", network)
	}
	specs, err := Specs(inv)
	if err != nil {
		return nil, fmt.Errorf("network %q: %w", network, err)
	}
	return NewTopology(specs).Links(machines, n.Machines), nil
}

// Topology is the mesh's planned peers (from Specs), indexed to judge
// many links: build it once per inventory.
type Topology struct {
	spec map[[2]string]*helperapi.Peer
}

// NewTopology indexes specs by (machine, peer).
func NewTopology(specs map[string]helperapi.Spec) *Topology {
	n := 0
	for _, sp := range specs {
		n += len(sp.Peers)
	}
	t := &Topology{spec: make(map[[2]string]*helperapi.Peer, n)}
	for name, sp := range specs {
		for i, p := range sp.Peers {
			t.spec[[2]string{name, p.Name}] = &sp.Peers[i]
		}
	}
	return t
}

// Links is NetworkLinks for the members given: every pair of them, judged
// from what machines (all that answered, relays included) last said.
func (t *Topology) Links(machines []MachineStatus, members []string) []LinkStatus {
	n := 0
	for _, m := range machines {
		n += len(m.Facts.Peers)
	}
	lv := linkView{spec: t.spec, peer: make(map[[2]string]*helperapi.PeerFacts, n), answering: make(map[string]bool, len(machines))}
	for _, m := range machines {
		if m.Status == StatusOffline || m.Status == "" {
			continue
		}
		lv.answering[m.Name] = true
		for i, p := range m.Facts.Peers {
			lv.peer[[2]string{m.Name, p.Name}] = &m.Facts.Peers[i]
		}
	}
	out := make([]LinkStatus, 0, len(members)*(len(members)-1)/2)
	for i, a := range members {
		for _, b := range members[i+1:] {
			out = append(out, lv.link(a, b))
		}
	}
	return out
}

// linkView is what links are judged from: the specs' peers and the
// answering machines' WireGuard peers, by (machine, peer).
type linkView struct {
	spec      map[[2]string]*helperapi.Peer
	peer      map[[2]string]*helperapi.PeerFacts
	answering map[string]bool
}

func (lv linkView) link(a, b string) LinkStatus {
	via := ""
	if p, ok := lv.specPeer(a, b); ok {
		via = p.Via
	}
	if via == "" {
		return lv.direct(a, b)
	}
	l := LinkStatus{A: a, B: b, Via: via, State: LinkOK, RTTMillis: -1}
	legs := []LinkStatus{lv.direct(a, via), lv.direct(via, b)}
	l.HandshakeAge = max(legs[0].HandshakeAge, legs[1].HandshakeAge)
	if min(legs[0].HandshakeAge, legs[1].HandshakeAge) < 0 {
		l.HandshakeAge = -1
	}
	if legs[0].RTTMillis >= 0 && legs[1].RTTMillis >= 0 {
		l.RTTMillis = legs[0].RTTMillis + legs[1].RTTMillis
	}
	for _, leg := range legs {
		if leg.State != LinkOK && l.State != LinkDown {
			l.State = leg.State
			l.Why = fmt.Sprintf("through %s, the leg %s–%s: %s", via, leg.A, leg.B, leg.Why)
		}
	}
	return l
}

func (lv linkView) specPeer(from, to string) (*helperapi.Peer, bool) {
	p, ok := lv.spec[[2]string{from, to}]
	return p, ok
}

// peerFacts is what machine from's WireGuard says of its peer to.
func (lv linkView) peerFacts(from, to string) (*helperapi.PeerFacts, bool) {
	p, ok := lv.peer[[2]string{from, to}]
	return p, ok
}

func fresh(age float64) bool {
	return age >= 0 && time.Duration(age*float64(time.Second)) <= StaleHandshake
}

// direct is the link between two machines that peer with each other.
func (lv linkView) direct(a, b string) LinkStatus {
	l := LinkStatus{A: a, B: b, HandshakeAge: -1, RTTMillis: -1}
	aOK, bOK := lv.answering[a], lv.answering[b]
	if !aOK && !bOK {
		l.State, l.Why = LinkUnknown, fmt.Sprintf("neither %s nor %s answers", a, b)
		return l
	}
	var missing []string
	var probes []helperapi.Probe
	seen := false
	if aOK {
		if p, ok := lv.peerFacts(a, b); ok {
			seen = true
			if p.Probe != nil {
				probes = append(probes, *p.Probe)
			}
			l.HandshakeAge, l.BytesAB, l.BytesBA = p.HandshakeAge, p.TxBytes, p.RxBytes
		} else {
			missing = append(missing, fmt.Sprintf("%s has no WireGuard peer for %s", a, b))
		}
	}
	if bOK {
		if p, ok := lv.peerFacts(b, a); ok {
			if !seen {
				l.BytesAB, l.BytesBA = p.RxBytes, p.TxBytes
			}
			if p.Probe != nil {
				probes = append(probes, *p.Probe)
			}
			seen = true
			if p.HandshakeAge >= 0 && (l.HandshakeAge < 0 || p.HandshakeAge < l.HandshakeAge) {
				l.HandshakeAge = p.HandshakeAge
			}
		} else {
			missing = append(missing, fmt.Sprintf("%s has no WireGuard peer for %s", b, a))
		}
	}
	if fresh(l.HandshakeAge) {
		l.State, l.Why = framesCross(&l, probes)
		return l
	}
	l.State = LinkDown
	switch {
	case !seen:
		l.Why = joinWords(missing) + ": its spec is not applied (`butter sync`)"
		return l
	case l.HandshakeAge < 0:
		l.Why = "no handshake ever: "
	default:
		l.Why = fmt.Sprintf("no handshake for %s: ", time.Duration(l.HandshakeAge*float64(time.Second)).Round(time.Second))
	}
	l.Why += "UDP between them is blocked, or an endpoint is wrong" + lv.endpoints(a, b)
	if len(missing) > 0 {
		l.Why += "; " + joinWords(missing)
	}
	if !aOK || !bOK {
		quiet := a
		if aOK {
			quiet = b
		}
		l.Why += fmt.Sprintf(" (%s does not answer)", quiet)
	}
	return l
}

// framesCross judges a link with a fresh handshake by the helpers'
// echoes through it: made while the handshake was fresh, an unanswered
// small echo is a tunnel that carries no frames, an unanswered full-size
// one an MTU black hole. Either end's answered echo is enough.
func framesCross(l *LinkStatus, probes []helperapi.Probe) (state, why string) {
	judged := false
	for _, p := range probes {
		if !p.Handshake || p.Error != "" {
			continue
		}
		judged = true
		l.FullSize = max(l.FullSize, p.FullSize)
		if p.RTTMillis >= 0 && (l.RTTMillis < 0 || p.RTTMillis < l.RTTMillis) {
			l.RTTMillis = p.RTTMillis
		}
		l.FullSizeOK = l.FullSizeOK || p.FullSizeReplied
	}
	switch {
	case !judged:
		return LinkOK, ""
	case l.RTTMillis < 0:
		return LinkDown, "handshake but no frames: echoes through the tunnel get no answer, so a firewall drops the tunnel's traffic"
	case !l.FullSizeOK:
		return LinkDown, fmt.Sprintf("handshake and small frames, but full-size ones (%d bytes, don't fragment) are lost: "+
			"an MTU black hole on the path (a hop with a smaller MTU that drops instead of answering)", l.FullSize)
	}
	return LinkOK, ""
}

// endpoints says where each end sends the other's WireGuard packets.
func (lv linkView) endpoints(a, b string) string {
	var s string
	for _, e := range [][2]string{{a, b}, {b, a}} {
		if p, ok := lv.specPeer(e[0], e[1]); ok && p.Endpoint != "" {
			if s == "" {
				s = " ("
			} else {
				s += ", "
			}
			s += fmt.Sprintf("%s sends to %s at %s", e[0], e[1], p.Endpoint)
		}
	}
	if s != "" {
		s += ")"
	}
	return s
}

func joinWords(s []string) string {
	switch len(s) {
	case 0:
		return ""
	case 1:
		return s[0]
	}
	return s[0] + " and " + s[1]
}

// Path says how the pair reaches each other: "direct" or "via R".
func (l LinkStatus) Path() string {
	if l.Via != "" {
		return "via " + l.Via
	}
	return "direct"
}

// Handshake is the last handshake's age in words: "12s ago", "never".
func (l LinkStatus) Handshake() string {
	if l.HandshakeAge < 0 {
		return "never"
	}
	return time.Duration(l.HandshakeAge*float64(time.Second)).Round(time.Second).String() + " ago"
}

// RTT is the echoes' round trip in words: "0.42 ms", "—".
func (l LinkStatus) RTT() string {
	if l.RTTMillis < 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f ms", l.RTTMillis)
}

// Bytes is n bytes for people, in binary units: 0 B, 1.5 KiB, 12 MiB.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	suffix := "KMGTPE"[exp : exp+1]
	if v < 10 {
		return fmt.Sprintf("%.1f %siB", v, suffix)
	}
	return fmt.Sprintf("%.0f %siB", v, suffix)
}
