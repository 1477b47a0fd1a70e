package plumbing

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/plumbing/vm"
)

const helperUsage = `usage: butter helper VERB [flags]

The machine side of butter. The operator's butter drives it over SSH;
these verbs are also for looking around on the machine itself.

  daemon  [--state-dir DIR] [--socket PATH] [--libvirt-socket PATH] [--accel auto|kvm|tcg]
          [--max-image-size BYTES]            run the helper daemon in the foreground
  pubkey  [--state-dir DIR]                   print this machine's WireGuard public key
  apply   FILE|-                              apply a machine spec (JSON); print the report
  check   FILE|-                              print how the machine differs from a spec
  prepare FILE|-                              check a spec as apply would (input, generation); change nothing
  rotate-key                                  make a new WireGuard key, put it to use; print its public key
  desired                                     print the cloud's desired state this machine keeps (JSON)
  remove                                      tear down every link the helper made
  facts                                       print kernel capabilities and mesh state
  vm create NAME --network N --address A --image SOURCE [--cpus N] [--memory-mib N] [--disk-gib N]
            [--ssh-key FILE]... [--gateway A] [--cmdline ARGS]
  vm list
  vm start|stop|reboot|remove NAME [--timeout 30s] [--force]
  vm console NAME [--replay 40]              attach the serial console (Ctrl+] detaches)
  vm events                                   print VM lifecycle events, one JSON object a line
  images                                      list cached images

Verbs that talk to the daemon take --socket PATH (default ` + helperapi.DefaultSocket + `).
`

// command is one `butter helper` invocation.
type command struct {
	ctx            context.Context
	stdin          io.Reader
	stdout, stderr io.Writer

	fs            *flag.FlagSet
	stateDir      string
	socket        string
	libvirtSocket string
	accel         string
	imageMirror   string
	maxImageSize  int64
	verbose       bool
}

// RunCommand runs `butter helper ARGS...`.
func RunCommand(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, helperUsage)
		return nil
	}
	verb, args := args[0], args[1:]
	if verb == "vm" {
		if len(args) == 0 {
			return errors.New("butter helper vm: give create, list, start, stop, reboot, remove, console or events")
		}
		verb, args = "vm "+args[0], args[1:]
	}
	c := &command{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr}
	c.fs = flag.NewFlagSet("butter helper "+verb, flag.ContinueOnError)
	c.fs.SetOutput(stderr)
	c.fs.StringVar(&c.stateDir, "state-dir", helperapi.DefaultStateDir, "the helper's state folder")
	c.fs.StringVar(&c.socket, "socket", helperapi.DefaultSocket, "the helper daemon's socket")
	c.fs.StringVar(&c.libvirtSocket, "libvirt-socket", vm.DefaultSocket, "libvirtd's socket")
	c.fs.StringVar(&c.accel, "accel", helperapi.AccelAuto, "VM accelerator: auto, kvm or tcg")
	c.fs.StringVar(&c.imageMirror, "image-mirror", "", "https mirror of the image catalog's servers")
	c.fs.Int64Var(&c.maxImageSize, "max-image-size", 0, "the largest image file taken, in bytes (0: 32 GiB)")
	c.fs.BoolVar(&c.verbose, "v", false, "log debug detail")

	switch verb {
	case "daemon":
		return c.daemon(args)
	case "pubkey":
		if err := c.fs.Parse(args); err != nil {
			return err
		}
		k, err := state{c.stateDir}.privateKey()
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, k.PublicKey().String())
		return err
	case "apply", "check", "prepare":
		return c.specVerb(verb, args)
	case "rotate-key":
		return c.withClient(args, func(cl *helperapi.Client) error {
			k, err := cl.RotateKey(ctx)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(stdout, k)
			return err
		})
	case "desired":
		return c.withClient(args, func(cl *helperapi.Client) error { return printResult(cl.Desired(ctx))(stdout) })
	case "remove":
		return c.withClient(args, func(cl *helperapi.Client) error { return cl.Remove(ctx) })
	case "facts":
		return c.withClient(args, func(cl *helperapi.Client) error { return printResult(cl.Facts(ctx))(stdout) })
	case "images":
		return c.withClient(args, func(cl *helperapi.Client) error { return printResult(cl.Images(ctx))(stdout) })
	case "vm list":
		return c.withClient(args, func(cl *helperapi.Client) error { return printResult(cl.ListVMs(ctx))(stdout) })
	case "vm create":
		return c.vmCreate(args)
	case "vm start", "vm stop", "vm reboot", "vm remove":
		return c.vmAction(strings.TrimPrefix(verb, "vm "), args)
	case "vm console":
		return c.vmConsole(args)
	case "vm events":
		return c.withClient(args, func(cl *helperapi.Client) error {
			enc := json.NewEncoder(stdout)
			return cl.Watch(ctx, func(ev helperapi.VMEvent) { _ = enc.Encode(ev) })
		})
	case "serve", "supervise", "image": // the operator's verbs over SSH (serve.go)
		return c.remoteVerb(verb, args)
	}
	return fmt.Errorf("butter helper: unknown verb %q; see butter helper --help", verb)
}

func printResult[T any](v T, err error) func(io.Writer) error {
	return func(w io.Writer) error {
		if err != nil {
			return err
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
}

// parseNamed parses `NAME [flags]` or `[flags] NAME`.
func (c *command) parseNamed(args []string) (string, error) {
	name := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if err := c.fs.Parse(args); err != nil {
		return "", err
	}
	if name == "" && c.fs.NArg() > 0 {
		name = c.fs.Arg(0)
	}
	if name == "" {
		return "", fmt.Errorf("%s: give the VM's name", c.fs.Name())
	}
	if err := helperapi.CheckName("vm", name); err != nil {
		return "", fmt.Errorf("%s: %w", c.fs.Name(), err)
	}
	return name, nil
}

func (c *command) vmOptions() vm.Options {
	return vm.Options{Socket: c.libvirtSocket, Accel: c.accel, MaxImageSize: c.maxImageSize}
}

func (c *command) daemon(args []string) error {
	if err := c.fs.Parse(args); err != nil {
		return err
	}
	level := slog.LevelInfo
	if c.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: level}))
	return RunDaemon(c.ctx, DaemonOptions{StateDir: c.stateDir, Socket: c.socket, Log: log,
		VM: c.vmOptions(), ImageMirror: c.imageMirror})
}

func (c *command) withClient(args []string, do func(*helperapi.Client) error) error {
	if err := c.fs.Parse(args); err != nil {
		return err
	}
	cl, err := helperapi.Dial(c.ctx, c.socket)
	if err != nil {
		return err
	}
	defer cl.Close()
	return do(cl)
}

func (c *command) specVerb(verb string, args []string) error {
	if err := c.fs.Parse(args); err != nil {
		return err
	}
	if c.fs.NArg() != 1 {
		return fmt.Errorf("butter helper %s: give one spec file, or - for standard input", verb)
	}
	var data []byte
	var err error
	if name := c.fs.Arg(0); name == "-" {
		data, err = io.ReadAll(c.stdin)
	} else {
		data, err = os.ReadFile(name)
	}
	if err != nil {
		return fmt.Errorf("read spec: %w", err)
	}
	spec, err := helperapi.ParseSpec(data)
	if err != nil {
		return err
	}
	return c.withClient(nil, func(cl *helperapi.Client) error {
		switch verb {
		case "apply":
			return printResult(cl.Apply(c.ctx, spec))(c.stdout)
		case "prepare":
			return cl.Prepare(c.ctx, spec)
		}
		d, err := cl.Check(c.ctx, spec)
		return printResult(helperapi.CheckResult{Drift: d}, err)(c.stdout)
	})
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func (c *command) vmCreate(args []string) error {
	var req helperapi.VMRequest
	var keyFiles stringList
	c.fs.StringVar(&req.Network, "network", "", "the private network")
	c.fs.StringVar(&req.Address, "address", "", "the VM's address on the network")
	c.fs.StringVar(&req.Image, "image", "", "catalog name, URL, file, or kernel=PATH,initrd=PATH[,cmdline=ARGS]")
	c.fs.IntVar(&req.CPUs, "cpus", helperapi.DefaultCPUs, "virtual CPUs")
	c.fs.IntVar(&req.MemoryMiB, "memory-mib", helperapi.DefaultMemoryMiB, "memory in MiB")
	c.fs.IntVar(&req.DiskGiB, "disk-gib", 0, "disk size in GiB (0: the image's own)")
	c.fs.StringVar(&req.Gateway, "gateway", "", "default gateway on the network")
	c.fs.StringVar(&req.Hostname, "hostname", "", "host name (default: the VM's name)")
	c.fs.StringVar(&req.Cmdline, "cmdline", "", "more kernel arguments (kernel boot)")
	c.fs.Var(&keyFiles, "ssh-key", "an SSH public key file to authorize (repeatable)")
	hostKeyFile := c.fs.String("host-key", "", "the VM's ed25519 SSH host key, a private key file (disk images)")
	name, err := c.parseNamed(args)
	if err != nil {
		return err
	}
	req.Name = name
	for _, f := range keyFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("ssh key: %w", err)
		}
		req.SSHKeys = append(req.SSHKeys, strings.TrimSpace(string(b)))
	}
	if *hostKeyFile != "" {
		b, err := os.ReadFile(*hostKeyFile)
		if err != nil {
			return fmt.Errorf("host key: %w", err)
		}
		req.HostKey = helperapi.PrivateKey(b)
	}
	if req.Creator == "" {
		req.Creator = "root@" + hostname()
	}
	return c.withClient(nil, func(cl *helperapi.Client) error {
		info, err := cl.CreateVM(c.ctx, req, func(p helperapi.Progress) {
			fmt.Fprintf(c.stderr, "%s %s: %d of %d bytes\n", p.Phase, p.Name, p.Done, p.Total)
		})
		return printResult(info, err)(c.stdout)
	})
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "localhost"
	}
	return h
}

func (c *command) vmAction(action string, args []string) error {
	timeout := c.fs.Duration("timeout", helperapi.DefaultStopTimeout, "stop: how long to wait for the guest to shut down")
	force := c.fs.Bool("force", false, "reboot: reset instead of asking the guest")
	name, err := c.parseNamed(args)
	if err != nil {
		return err
	}
	return c.withClient(nil, func(cl *helperapi.Client) error {
		res, err := cl.VMAction(c.ctx, helperapi.VMActionRequest{Name: name, Action: action,
			TimeoutSeconds: timeout.Seconds(), Force: *force})
		if err == nil && res.Forced {
			fmt.Fprintf(c.stderr, "vm %s did not shut down within %s: pulled the plug\n", name, *timeout)
		}
		return printResult(res, err)(c.stdout)
	})
}

// detachKey is Ctrl+]: typed on the console, it detaches.
const detachKey = 0x1d

// consoleGrace is how long a console stays attached after its input
// ends, for the output of what was typed last.
const consoleGrace = time.Second

func (c *command) vmConsole(args []string) error {
	replay := c.fs.Int("replay", 40, "lines of earlier output to show first")
	name, err := c.parseNamed(args)
	if err != nil {
		return err
	}
	m, err := vm.Open(c.ctx, c.vmOptions())
	if err != nil {
		return err
	}
	defer m.Close()
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	pr, pw := io.Pipe()
	defer pr.Close()
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.stdin.Read(buf)
			if i := bytes.IndexByte(buf[:n], detachKey); i >= 0 {
				pw.Write(buf[:i])
				cancel()
				pw.Close()
				return
			}
			if n > 0 {
				if _, werr := pw.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				// End of input: the operator hung up (or a script's
				// input ran out). Let the last output through, then
				// detach, so the session ends on both sides.
				select {
				case <-ctx.Done():
				case <-time.After(consoleGrace):
				}
				cancel()
				pw.Close()
				return
			}
		}
	}()
	return m.Console(ctx, name, pr, c.stdout, *replay)
}
