package plumbing

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/butter-cloud/butter/helperapi"
)

// readLoad reads the machine's load from /proc; what it cannot read stays
// zero.
func readLoad() helperapi.Load {
	l := helperapi.Load{CPUs: runtime.NumCPU()}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			l.Load1, _ = strconv.ParseFloat(f[0], 64)
		}
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 2 {
				continue
			}
			kb, _ := strconv.Atoi(fields[1])
			switch fields[0] {
			case "MemTotal:":
				l.MemTotalMiB = kb / 1024
			case "MemAvailable:":
				l.MemAvailableMiB = kb / 1024
			}
		}
	}
	return l
}
