package assets

import (
	_ "embed"
	"encoding/xml"
	"fmt"
	"strings"
	"text/template"
)

//go:embed domain.xml.tmpl
var domainXML string

var domainTmpl = template.Must(template.New("domain").Funcs(template.FuncMap{"x": xmlText}).Parse(domainXML))

// VMNamespace is the XML namespace of the metadata butter keeps in each
// domain, so that listing recovers everything from libvirt alone.
const VMNamespace = "https://butter.cloud/xmlns/vm/1"

// Domain is what a VM's libvirt domain is made from.
type Domain struct {
	Name      string
	Type      string // kvm or qemu (TCG)
	Arch      string // x86_64, aarch64
	Machine   string // pc, virt
	MemoryMiB int
	CPUs      int

	Kernel, Initrd, Cmdline string // direct kernel boot, if Kernel is set
	Disk                    string // the qcow2 overlay, if any
	Seed                    string // the cloud-init seed ISO, if any

	Bridge string
	// Port names the VM's tap (libvirt makes it under that name), so the
	// helper's port guard finds it; empty lets libvirt pick vnetN.
	Port       string
	MAC        string
	MTU        int
	ConsoleLog string

	// Metadata, kept under VMNamespace.
	Network, Address, Image, Creator, Created string
}

// Render returns the domain XML. Every string is escaped.
func (d Domain) Render() (string, error) {
	if d.Name == "" || d.Type == "" || d.Arch == "" || d.Machine == "" || d.Bridge == "" || d.MAC == "" ||
		d.ConsoleLog == "" || d.MemoryMiB <= 0 || d.CPUs <= 0 || d.MTU <= 0 {
		return "", fmt.Errorf("domain %q: name, type, arch, machine, bridge, MAC, console log, memory, CPUs and MTU are all needed", d.Name)
	}
	if d.Disk == "" && d.Kernel == "" {
		return "", fmt.Errorf("domain %q: give a disk or a kernel to boot", d.Name)
	}
	var b strings.Builder
	err := domainTmpl.Execute(&b, struct {
		Domain
		Namespace string
	}{d, VMNamespace})
	if err != nil {
		return "", fmt.Errorf("render domain %q: %w", d.Name, err)
	}
	return b.String(), nil
}

func xmlText(s string) (string, error) {
	var b strings.Builder
	if err := xml.EscapeText(&b, []byte(s)); err != nil {
		return "", err
	}
	return strings.ReplaceAll(b.String(), "'", "&#39;"), nil
}
