package testbed

import (
	"fmt"
	"slices"
	"strings"

	"github.com/google/nftables"
)

// Ruleset describes every nftables table (with its flags), chain and rule
// c sees, one sorted line each, so that two calls compare: what a test
// reads before and after to show a table of another program untouched.
func Ruleset(c *nftables.Conn) (string, error) {
	tables, err := c.ListTables()
	if err != nil {
		return "", fmt.Errorf("list nftables tables: %w", err)
	}
	chains, err := c.ListChains()
	if err != nil {
		return "", fmt.Errorf("list nftables chains: %w", err)
	}
	var lines []string
	for _, tb := range tables {
		lines = append(lines, fmt.Sprintf("table family %d %s flags %d", tb.Family, tb.Name, tb.Flags))
		for _, ch := range chains {
			if ch.Table.Name != tb.Name || ch.Table.Family != tb.Family {
				continue
			}
			rules, err := c.GetRules(tb, ch)
			if err != nil {
				return "", fmt.Errorf("rules of %s %s: %w", tb.Name, ch.Name, err)
			}
			for _, r := range rules {
				var ex []string
				for _, e := range r.Exprs {
					ex = append(ex, fmt.Sprintf("%T%+v", e, e))
				}
				lines = append(lines, fmt.Sprintf("  family %d %s %s: %s", tb.Family, tb.Name, ch.Name, strings.Join(ex, " ")))
			}
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n"), nil
}
