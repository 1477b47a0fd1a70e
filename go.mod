module github.com/butter-cloud/butter

go 1.26.8

require (
	github.com/diskfs/go-diskfs v1.9.4 // writes the cloud-init seed as ISO 9660 with Rock Ridge and Joliet names (plumbing/cloudinit)
	github.com/google/go-cmp v0.7.0
	github.com/kevinburke/ssh_config v1.6.0 // reads ~/.ssh/config for remote/ (Host patterns, Include, Match Host)
	github.com/sourcegraph/jsonrpc2 v0.2.3
	github.com/therootcompany/xz v1.0.1
	github.com/vishvananda/netlink v1.3.1
	go.yaml.in/yaml/v3 v3.0.4 // renders the seed's YAML documents (plumbing/cloudinit)
	golang.org/x/crypto v0.48.0 // ssh: checks seed keys; the cloud-init tier's SSH client
	golang.org/x/sys v0.50.0
	golang.zx2c4.com/wireguard v0.0.0-20260522210424-ecfc5a8d5446
	golang.zx2c4.com/wireguard/wgctrl v0.0.0-20241231184526-a9ab2273dd10
)

require (
	github.com/anchore/go-lzo v0.1.0 // indirect
	github.com/digitalocean/go-libvirt v0.0.0-20261013170128-efbbdf578ac8 // indirect
	github.com/djherbis/times v1.6.0 // indirect
	github.com/elliotwutingfeng/asciiset v0.0.0-20260129054604-cfde2086bc57 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/josharian/native v1.1.0 // indirect
	github.com/klauspost/compress v1.18.5 // indirect
	github.com/mdlayher/genetlink v1.3.2 // indirect
	github.com/mdlayher/netlink v1.7.2 // indirect
	github.com/mdlayher/socket v0.5.1 // indirect
	github.com/pierrec/lz4/v4 v4.1.26 // indirect
	github.com/pkg/xattr v0.4.12 // indirect
	github.com/sirupsen/logrus v1.9.4 // indirect
	github.com/ulikunitz/xz v0.5.15 // indirect
	github.com/vishvananda/netns v0.0.5 // indirect
	golang.org/x/net v0.49.0 // indirect
	golang.org/x/sync v0.10.0 // indirect
	golang.org/x/term v0.48.0 // indirect
	golang.zx2c4.com/wintun v0.0.0-20230126152724-0fa3db229ce2 // indirect
)
