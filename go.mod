module github.com/butter-cloud/butter

go 1.26.8

require (
	charm.land/bubbles/v2 v2.2.1 // the dashboard: help, key bindings, progress bar (tui/)
	charm.land/bubbletea/v2 v2.1.1 // the dashboard's event loop and terminal hand-off for the console (tui/)
	charm.land/huh/v2 v2.0.3 // the dashboard's forms with arrow-key menus (tui/)
	charm.land/lipgloss/v2 v2.1.0 // the dashboard's styles, layout and overlays (tui/)
	github.com/ProtonMail/go-crypto v1.5.2 // checks the signature of a catalog image's checksum file against the embedded distribution keys (plumbing/images); x/crypto/openpgp's maintained successor
	github.com/charmbracelet/x/ansi v0.11.9 // measures and truncates styled cells in the dashboard's tables (tui/)
	github.com/charmbracelet/x/exp/golden v0.1.0 // golden views of the dashboard (tui tests)
	github.com/charmbracelet/x/exp/teatest/v2 v2.0.0-20260823001701-96af6d2cb5f6 // end-to-end dashboard flows (tui tests)
	github.com/diskfs/go-diskfs v1.9.4 // writes the cloud-init seed as ISO 9660 with Rock Ridge and Joliet names (plumbing/cloudinit)
	github.com/google/go-cmp v0.7.0
	github.com/google/nftables v0.3.0 // the helper's firewall table, one nf_tables transaction (plumbing/firewall_linux.go)
	github.com/kevinburke/ssh_config v1.6.0 // reads ~/.ssh/config for remote/ where OpenSSH's ssh is not installed (with it: ssh -G)
	github.com/mdlayher/netlink v1.7.3-0.20250113171957-fbb4dce95f42 // the nf_tables socket's type, to size its buffers (plumbing/nft_linux.go); in the graph already through nftables and wgctrl
	github.com/miekg/dns v1.1.73 // the helper's in-process resolver for each network (plumbing/resolver): no dnsmasq on machines; the library CoreDNS is built on
	github.com/muesli/cancelreader v0.2.2 // a console read the dashboard can cancel on detach, so no keystroke is lost (tui/)
	github.com/sourcegraph/jsonrpc2 v0.2.3
	github.com/spf13/cobra v1.10.2 // the verbs, flags, help and completion; what incus, gh and kubectl use (cli/)
	github.com/therootcompany/xz v1.0.1
	github.com/vishvananda/netlink v1.3.1
	go.yaml.in/yaml/v3 v3.0.4 // renders the seed's YAML documents (plumbing/cloudinit)
	golang.org/x/crypto v0.54.0 // ssh: checks seed keys; the cloud-init tier's SSH client
	golang.org/x/net v0.57.0 // netutil.LimitListener bounds the resolver's TCP connections (plumbing/resolver); icmp for the link probes
	golang.org/x/sys v0.50.0
	golang.zx2c4.com/wireguard v0.0.0-20260522210424-ecfc5a8d5446
	golang.zx2c4.com/wireguard/wgctrl v0.0.0-20241231184526-a9ab2273dd10
)

require (
	github.com/digitalocean/go-libvirt v0.0.0-20261013170128-efbbdf578ac8
	github.com/dustin/go-humanize v1.0.1 // reads sizes (2G = 2GiB, 2GB decimal) for the CLI's --memory and --disk (cli/); already in the graph through huh
	github.com/vishvananda/netns v0.0.5
	golang.org/x/term v0.48.0
)

require (
	github.com/atotto/clipboard v0.1.4 // indirect
	github.com/aymanbagabas/go-udiff v0.4.1 // indirect
	github.com/catppuccin/go v0.2.0 // indirect
	github.com/charmbracelet/colorprofile v0.4.3 // indirect
	github.com/charmbracelet/harmonica v0.2.0 // indirect
	github.com/charmbracelet/ultraviolet v0.0.0-20261008173134-6b8d4baf91b4 // indirect
	github.com/charmbracelet/x/exp/ordered v0.1.0 // indirect
	github.com/charmbracelet/x/exp/strings v0.0.0-20240722160745-212f7b056ed0 // indirect
	github.com/charmbracelet/x/term v0.2.2 // indirect
	github.com/charmbracelet/x/termios v0.1.1 // indirect
	github.com/charmbracelet/x/windows v0.2.2 // indirect
	github.com/clipperhouse/displaywidth v0.11.0 // indirect
	github.com/clipperhouse/uax29/v2 v2.7.0 // indirect
	github.com/cloudflare/circl v1.6.3 // indirect
	github.com/djherbis/times v1.6.0 // indirect
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/lucasb-eyer/go-colorful v1.4.1 // indirect
	github.com/mattn/go-runewidth v0.0.30 // indirect
	github.com/mdlayher/genetlink v1.3.2 // indirect
	github.com/mdlayher/socket v0.5.1 // indirect
	github.com/mitchellh/hashstructure/v2 v2.0.2 // indirect
	github.com/rivo/uniseg v0.4.7 // indirect
	github.com/spf13/pflag v1.0.9 // indirect
	github.com/xo/terminfo v1.0.0 // indirect
	golang.org/x/sync v0.22.0 // indirect
	golang.zx2c4.com/wintun v0.0.0-20230126152724-0fa3db229ce2 // indirect
)
