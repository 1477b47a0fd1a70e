package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/butter-cloud/butter/cloud"
	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/internal/printable"
)

// printDryRun prints what a change would do, per machine, as a shell
// script for each: comments say the change, lines are the commands. A
// machine away is said to be; one that could not answer otherwise (a
// refusal, a helper to upgrade) too, and makes the exit 1 once every
// machine is printed.
func (s *session) printDryRun(verb string, d cloud.DryRun) error {
	head := "dry run of " + verb + ": nothing changed"
	if d.Generation != 0 {
		head += fmt.Sprintf(" (the change would be generation %d)", d.Generation)
	}
	fmt.Fprintln(s.stdout, "# "+head)
	if len(d.Machines) == 0 {
		fmt.Fprintln(s.stdout, "# no machine would be asked to change anything")
	}
	var failed []string
	for _, m := range d.Machines {
		fmt.Fprintf(s.stdout, "\n# machine %s: %s\n", m.Machine, comment(m.What))
		switch {
		case m.Away:
			fmt.Fprintf(s.stdout, "# away (%s): it would be pending, and catch up when it returns\n", comment(m.Err.Error()))
			continue
		case m.Err != nil:
			fmt.Fprintf(s.stdout, "# no plan: %s\n", comment(m.Err.Error()))
			failed = append(failed, m.Machine)
			continue
		case len(m.Steps) == 0:
			fmt.Fprintln(s.stdout, "# nothing to change")
		}
		for _, st := range m.Steps {
			fmt.Fprintf(s.stdout, "# %s\n", comment(st.Change))
			for _, c := range st.Commands {
				for _, line := range strings.Split(c, "\n") {
					fmt.Fprintln(s.stdout, printable.String(line))
				}
			}
		}
	}
	if len(failed) > 0 {
		return errors.New("dry run: no plan from machine " + strings.Join(failed, ", ") + " (see above)")
	}
	return nil
}

// comment makes remote text one safe line of a shell comment.
func comment(s string) string {
	return strings.ReplaceAll(printable.String(s), "\n", " ")
}

// printAddition says what machine add would do: the machine has no helper
// to ask for a plan yet, so the steps are told, not rendered.
func (s *session) printAddition(p cloud.AdditionPlan) error {
	m := p.Machine
	others := "no other machine yet"
	if len(p.Others) > 0 {
		others = "machines " + strings.Join(p.Others, ", ") + " (each would take it as a peer; those away catch up when back)"
	}
	fmt.Fprintf(s.stdout, `# dry run of machine add %[1]s: nothing changed, nothing contacted
# A machine without butter's helper cannot show a plan; adding it would:
#  1. connect to %[2]s port %[3]d over SSH, checking its host key (--accept-new-host-key or --host-key, else asked)
#  2. check the prerequisites (ip, nft, the WireGuard module or TUN) and install what is missing (with --yes, else asked)
#  3. upload this butter's helper as %[4]s/butter-<version> (sha256 checked) and start its daemon
#     (the systemd unit butter-helper.service where systemd runs)
#  4. have the helper make the machine's WireGuard key (%[5]s/wireguard.key, never leaving the machine)
#  5. give it mesh address %[6]s and apply generation %[7]d on it: its WireGuard device and its peers
#  6. apply generation %[7]d on %[8]s
# Once added, `+"`butter sync --dry-run %[1]s`"+` shows its commands.
`, printable.String(m.Name), printable.String(m.Address), m.Port, p.HelperDir, helperapi.DefaultStateDir, m.MeshIP, p.Generation, others)
	return nil
}

// printAdoption says what adopt would write: the inventory itself, headed
// by comments (what it holds, the machines that did not answer), so the
// whole output is the YAML file.
func (s *session) printAdoption(path string, a cloud.Adopted) error {
	inv := a.Inventory
	data, err := inv.Marshal()
	if err != nil {
		return err
	}
	list := func(what string, names []string) string {
		if len(names) == 0 {
			return "no " + what
		}
		return what + " " + strings.Join(names, ", ")
	}
	var ms, ns, vs []string
	for _, m := range inv.Machines {
		ms = append(ms, m.Name)
	}
	for _, n := range inv.Networks {
		ns = append(ns, n.Name)
	}
	for _, v := range inv.VMs {
		vs = append(vs, v.Name)
	}
	fmt.Fprintf(s.stdout, "# dry run of adopt: nothing changed, nothing written (no inventory, no host key, no helper installed)\n")
	fmt.Fprintf(s.stdout, "# %s would hold generation %d, adopted from %s: %s, %s, %s\n", comment(path), inv.Generation,
		comment(a.From), list("machines", ms), list("networks", ns), list("VMs", vs))
	for _, b := range a.Unreached {
		fmt.Fprintf(s.stdout, "# machine %s did not answer (%s): it would be pending until `butter sync` reaches it\n",
			b.Machine, comment(fmt.Sprint(b.Err)))
	}
	_, err = s.stdout.Write(data)
	return err
}
