// Command buildimage builds the tests' cached Debian images ahead of the
// tests that boot them, so CI can build one in the background while other
// packages' tests run: `buildimage machine` (the real-machines tier's),
// `buildimage cloud` (the cloud-init and VM tiers'). An image already in
// the cache (keyed by its inputs) is found, not rebuilt; a build another
// process has started is waited for. Needs root and debootstrap.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/butter-cloud/butter/internal/testbed"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: buildimage machine|cloud")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()
	start := time.Now()
	var dir string
	var err error
	switch os.Args[1] {
	case "machine":
		var img testbed.MachineImage
		img, err = testbed.BuildMachineImage(ctx, "", os.Stderr)
		dir = img.Dir
	case "cloud":
		var img testbed.CloudImage
		img, err = testbed.BuildCloudImage(ctx, "", os.Stderr)
		dir = img.Dir
	default:
		fmt.Fprintf(os.Stderr, "buildimage: unknown image %q: say machine or cloud\n", os.Args[1])
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "buildimage %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	fmt.Printf("%s image %s ready after %s\n", os.Args[1], dir, time.Since(start).Round(100*time.Millisecond))
}
