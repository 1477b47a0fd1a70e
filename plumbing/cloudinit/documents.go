package cloudinit

// The documents are made with go.yaml.in/yaml/v3, the YAML project's own
// maintained continuation of gopkg.in/yaml.v3. cloud-init reads them with
// PyYAML, a YAML 1.1 parser, which would take an unquoted 52:54:00:12:34:56
// for a base-60 number and "on" for true: every string the seed supplies is
// therefore written double-quoted, so no value can be read as another type
// or break out of its place in the document.

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"

	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/ssh"
)

// metaData is NoCloud's meta-data.
type metaData struct {
	InstanceID    string `yaml:"instance-id"`
	LocalHostname string `yaml:"local-hostname"`
}

// cloudConfig is user-data: only what the seed asks for.
type cloudConfig struct {
	Hostname string `yaml:"hostname"`
	FQDN     string `yaml:"fqdn,omitempty"`
	// User renames the distribution's default user, keeping its groups
	// and sudo rule: cloud-init merges it into the distro's default_user.
	// A mapping, since cloud-init 22.4 deprecates the plain string.
	User              *user    `yaml:"user,omitempty"`
	SSHAuthorizedKeys []string `yaml:"ssh_authorized_keys,omitempty"`
	// SSHKeys are the host keys sshd is given instead of making its own.
	SSHKeys *hostKeys `yaml:"ssh_keys,omitempty"`
}

type hostKeys struct {
	Ed25519Private string `yaml:"ed25519_private"`
	Ed25519Public  string `yaml:"ed25519_public"`
}

type user struct {
	Name string `yaml:"name"`
}

// networkConfig is network-config version 2 with one ethernet.
type networkConfig struct {
	Version   int       `yaml:"version"`
	Ethernets yaml.Node `yaml:"ethernets"` // name → ethernet; a node, to quote the name
}

type ethernet struct {
	Match       match        `yaml:"match"`
	SetName     string       `yaml:"set-name"`
	DHCP4       bool         `yaml:"dhcp4,omitempty"`
	Addresses   []string     `yaml:"addresses,omitempty"`
	Gateway4    string       `yaml:"gateway4,omitempty"`
	Gateway6    string       `yaml:"gateway6,omitempty"`
	MTU         int          `yaml:"mtu,omitempty"`
	Nameservers *nameservers `yaml:"nameservers,omitempty"`
}

type match struct {
	MACAddress string `yaml:"macaddress"`
}

type nameservers struct {
	Search    []string `yaml:"search,omitempty"`
	Addresses []string `yaml:"addresses,omitempty"`
}

// MetaData returns NoCloud's meta-data document: the instance ID and the
// host name.
func (s Seed) MetaData() ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return marshal(metaData{InstanceID: s.InstanceID, LocalHostname: s.Hostname})
}

// UserData returns the #cloud-config user-data document: the host name
// (and FQDN if Hostname has dots), the default user's name if User is set,
// its SSH keys, and the host key if HostKey is set.
func (s Seed) UserData() ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	cc := cloudConfig{
		Hostname:          s.shortName(),
		SSHAuthorizedKeys: s.SSHKeys,
	}
	if s.User != "" {
		cc.User = &user{Name: s.User}
	}
	if s.Hostname != cc.Hostname {
		cc.FQDN = s.Hostname
	}
	if s.HostKey != "" {
		pub, err := s.HostKey.PublicKey()
		if err != nil {
			return nil, err
		}
		cc.SSHKeys = &hostKeys{Ed25519Private: string(s.HostKey),
			Ed25519Public: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))}
	}
	b, err := marshal(cc)
	if err != nil {
		return nil, err
	}
	return append([]byte("#cloud-config\n"), b...), nil
}

// NetworkConfig returns the network-config document (version 2): the
// interface with NIC.MAC, renamed to NIC.Name, with the static address (or
// DHCP without one), MTU, default route and name servers the NIC has.
func (s Seed) NetworkConfig() ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	n := s.NIC
	e := ethernet{
		Match:   match{MACAddress: n.MAC.String()},
		SetName: n.Name,
		MTU:     n.MTU,
	}
	if n.Address.IsValid() {
		e.Addresses = []string{n.Address.String()}
	} else {
		e.DHCP4 = true
	}
	if g := n.Gateway; g.IsValid() {
		if g.Is4() {
			e.Gateway4 = g.String()
		} else {
			e.Gateway6 = g.String()
		}
	}
	if len(n.DNS) > 0 || len(n.Search) > 0 {
		e.Nameservers = &nameservers{Search: n.Search, Addresses: addrStrings(n.DNS)}
	}
	var value yaml.Node
	if err := value.Encode(e); err != nil {
		return nil, fmt.Errorf("network-config: %w", err)
	}
	nc := networkConfig{Version: 2}
	nc.Ethernets = yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
		{Kind: yaml.ScalarNode, Tag: "!!str", Value: n.Name, Style: yaml.DoubleQuotedStyle},
		&value,
	}}
	return marshal(nc)
}

func addrStrings(as []netip.Addr) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}

// marshal writes v as YAML with two-space indents and every string value
// double-quoted.
func marshal(v any) ([]byte, error) {
	var doc yaml.Node
	if err := doc.Encode(v); err != nil {
		return nil, fmt.Errorf("encode YAML: %w", err)
	}
	quoteValues(&doc)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("encode YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode YAML: %w", err)
	}
	return buf.Bytes(), nil
}

// quoteValues double-quotes every string scalar that is not a mapping key.
// The keys come from the struct tags above, except the ethernet's name,
// which is quoted where it is made.
func quoteValues(n *yaml.Node) {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			quoteValues(c)
		}
	case yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 {
			quoteValues(n.Content[i])
		}
	case yaml.ScalarNode:
		if n.Tag == "!!str" {
			n.Style = yaml.DoubleQuotedStyle
		}
	}
}
