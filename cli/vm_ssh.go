package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"

	"github.com/spf13/cobra"

	"github.com/butter-cloud/butter/cloud"
	"github.com/butter-cloud/butter/internal/printable"
)

func (s *session) vmSSHCommand() *cobra.Command {
	var (
		user    string
		options []string
	)
	cmd := &cobra.Command{
		Use:   "ssh NAME [-- COMMAND...]",
		Short: "Log in to a VM with the system ssh, through its machine, its host key known beforehand",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return errors.New("give the VM's name")
			}
			if dash := cmd.ArgsLenAtDash(); len(args) > 1 && dash != 1 {
				return fmt.Errorf("unexpected argument %q: put the command to run after --, as in `butter vm ssh %s -- uname -a`", args[1], args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return s.vmSSH(cmd.Context(), args[0], args[1:], user, options)
		},
	}
	cmd.Flags().StringVarP(&user, "user", "l", "", "the login user (default: the image's own, debian or ubuntu)")
	cmd.Flags().StringArrayVarP(&options, "option", "o", nil, "an ssh `OPTION=VALUE` to add, e.g. BatchMode=yes (repeatable; butter's own options win)")
	return cmd
}

func (s *session) vmProxyCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "proxy NAME",
		Short: "Connect standard input and output to a VM's SSH port through its machine (for ssh's ProxyCommand)",
		Args:  oneName("VM"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return s.withCloud(func(cl *cloud.Cloud) error {
				return proxyVM(cmd.Context(), cl, args[0], s.stdin, s.stdout)
			})
		},
	}
}

func (s *session) vmSSHConfigCommand() *cobra.Command {
	var user string
	cmd := &cobra.Command{
		Use:   "ssh-config [NAME...]",
		Short: "Print ssh_config Host blocks for VMs (ssh -F, scp, rsync, VS Code, Ansible)",
		RunE: func(cmd *cobra.Command, args []string) error {
			targets, proxy, err := s.sshTargets(cmd.Context(), args, user)
			if err != nil && len(args) > 0 {
				return err
			}
			if err != nil {
				// Every VM: the ones butter cannot reach are left out, and named.
				fmt.Fprintln(s.stderr, "butter: "+printable.String(err.Error()))
			}
			return cloud.WriteSSHConfig(s.stdout, targets, proxy)
		},
	}
	cmd.Flags().StringVarP(&user, "user", "l", "", "the login user for every VM (default: each image's own)")
	return cmd
}

// sshTargets are the SSH targets of the VMs named (all without names),
// with user as the login user if given, and the command line that runs
// this butter on this cloud for ssh's ProxyCommand.
func (s *session) sshTargets(ctx context.Context, names []string, user string) ([]cloud.SSHTarget, []string, error) {
	proxy, err := s.self()
	if err != nil {
		return nil, nil, err
	}
	var targets []cloud.SSHTarget
	err = s.withCloud(func(cl *cloud.Cloud) error {
		var err error
		targets, err = cl.SSHTargets(ctx, names, listTimeout)
		return err
	})
	if user != "" {
		for i := range targets {
			targets[i].User = user
		}
	}
	return targets, proxy, err
}

// self is the command line that runs this butter on this session's
// inventory.
func (s *session) self() ([]string, error) {
	inv, err := s.inventoryPath()
	if err != nil {
		return nil, err
	}
	return cloud.ProxyCommandLine(inv)
}

// vmSSH runs the system ssh to VM name, with command if given and the
// ssh options given added after butter's own (ssh takes an option's first
// value), and passes its exit status on.
func (s *session) vmSSH(ctx context.Context, name string, command []string, user string, options []string) error {
	targets, proxy, err := s.sshTargets(ctx, []string{name}, user)
	if err != nil {
		return err
	}
	targets[0].Extra = options
	args, err := targets[0].SSHArgs(proxy, command)
	if err != nil {
		return err
	}
	ssh, err := exec.LookPath("ssh")
	if err != nil {
		return fmt.Errorf("vm ssh needs the OpenSSH client: %w (install openssh-client)", err)
	}
	c := exec.CommandContext(ctx, ssh, args...)
	c.Stdin, c.Stdout, c.Stderr = s.stdin, s.stdout, s.stderr
	err = c.Run()
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) && ee.ExitCode() > 0 {
		return &exitStatus{ee.ExitCode()}
	}
	return err
}

// proxyVM connects in and out to VM name's SSH port until either side
// ends.
func proxyVM(ctx context.Context, cl *cloud.Cloud, name string, in io.Reader, out io.Writer) error {
	conn, err := cl.DialVM(ctx, name, cloud.SSHPort)
	if err != nil {
		return err
	}
	defer conn.Close()
	// Input ending only half-closes: the VM's side ending ends the
	// proxy. A Read from in that blocks is left behind, as with exec.Cmd.
	go func() {
		_, _ = io.Copy(conn, in)
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	}()
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(out, conn)
		done <- err
	}()
	select {
	case err = <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
