package vm

import (
	"context"
	"encoding/binary"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/butter-cloud/butter/assets"
	"github.com/butter-cloud/butter/helperapi"
	"github.com/digitalocean/go-libvirt"
)

// metadata is what butter keeps in a domain under assets.VMNamespace.
type metadata struct {
	XMLName xml.Name `xml:"vm"`
	Network string   `xml:"network"`
	Address string   `xml:"address"`
	Image   string   `xml:"image"`
	Creator string   `xml:"creator"`
	Created string   `xml:"created"`
}

// metadata reads a domain's butter metadata; ok is false for a domain
// butter did not make.
func (m *Manager) metadata(dom libvirt.Domain) (metadata, bool, error) {
	s, err := m.l.DomainGetMetadata(dom, int32(libvirt.DomainMetadataElement),
		libvirt.OptString{assets.VMNamespace}, libvirt.DomainAffectCurrent)
	if err != nil {
		if isCode(err, libvirt.ErrNoDomainMetadata) {
			return metadata{}, false, nil
		}
		return metadata{}, false, fmt.Errorf("read metadata of %q: %w", dom.Name, err)
	}
	var md metadata
	if err := xml.Unmarshal([]byte(s), &md); err != nil {
		return metadata{}, false, fmt.Errorf("parse metadata of %q: %w", dom.Name, err)
	}
	return md, true, nil
}

// List returns butter's VMs on this machine, by name.
func (m *Manager) List(ctx context.Context) ([]helperapi.VMInfo, error) {
	doms, _, err := m.l.ConnectListAllDomains(1, 0)
	if err != nil {
		return nil, fmt.Errorf("list domains: %w", err)
	}
	var out []helperapi.VMInfo
	for _, d := range doms {
		info, err := m.info(d)
		if err != nil {
			if libvirt.IsNotFound(err) {
				continue // removed while we looked
			}
			return nil, err
		}
		if info.Name == "" {
			continue // not ours
		}
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b helperapi.VMInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Get returns one VM.
func (m *Manager) Get(ctx context.Context, name string) (helperapi.VMInfo, error) {
	dom, _, err := m.lookup(name)
	if err != nil {
		return helperapi.VMInfo{}, err
	}
	return m.info(dom)
}

// domainXML is the part of a domain's XML that VMInfo needs.
type domainXML struct {
	Interfaces []struct {
		MAC struct {
			Address string `xml:"address,attr"`
		} `xml:"mac"`
	} `xml:"devices>interface"`
}

// info describes dom; a zero VMInfo for a domain that is not butter's.
func (m *Manager) info(dom libvirt.Domain) (helperapi.VMInfo, error) {
	md, ok, err := m.metadata(dom)
	if err != nil || !ok {
		return helperapi.VMInfo{}, err
	}
	state, maxMem, _, ncpu, cpuTime, err := m.l.DomainGetInfo(dom)
	if err != nil {
		return helperapi.VMInfo{}, fmt.Errorf("read vm %q: %w", dom.Name, err)
	}
	info := helperapi.VMInfo{
		Name: dom.Name, State: stateName(libvirt.DomainState(state)), CPUs: int(ncpu),
		MemoryMiB: int(maxMem / 1024), CPUTime: time.Duration(cpuTime),
		Network: md.Network, Address: md.Address, Image: md.Image, Creator: md.Creator,
	}
	info.Created, _ = time.Parse(time.RFC3339, md.Created)
	if a, err := m.l.DomainGetAutostart(dom); err == nil {
		info.Autostart = a == 1
	}
	if x, err := m.l.DomainGetXMLDesc(dom, 0); err == nil {
		var dx domainXML
		if xml.Unmarshal([]byte(x), &dx) == nil && len(dx.Interfaces) > 0 {
			info.MAC = dx.Interfaces[0].MAC.Address
		}
	}
	return info, nil
}

func stateName(s libvirt.DomainState) string {
	switch s {
	case libvirt.DomainRunning:
		return "running"
	case libvirt.DomainBlocked:
		return "blocked"
	case libvirt.DomainPaused:
		return "paused"
	case libvirt.DomainShutdown:
		return "shutting down"
	case libvirt.DomainShutoff:
		return "shut off"
	case libvirt.DomainCrashed:
		return "crashed"
	case libvirt.DomainPmsuspended:
		return "suspended"
	}
	return "unknown"
}

// virtualSize is the size of the disk an image holds: the qcow2 header's
// size field, or a raw file's length.
func virtualSize(path, format string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if format == "raw" {
		fi, err := f.Stat()
		if err != nil {
			return 0, err
		}
		return uint64(fi.Size()), nil
	}
	var hdr [32]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil {
		return 0, fmt.Errorf("read qcow2 header of %s: %w", path, err)
	}
	if string(hdr[:4]) != "QFI\xfb" {
		return 0, fmt.Errorf("%s is not a qcow2 image", path)
	}
	return binary.BigEndian.Uint64(hdr[24:32]), nil
}
