package helperapi

import (
	"strings"
	"testing"
)

func TestCheckName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"web", true},
		{"a", true},
		{"9", true},
		{"web-1", true},
		{strings.Repeat("a", 32), true},
		{strings.Repeat("a", 33), false},
		{"", false},
		{"web-", false},
		{"-web", false},
		{"Web", false},
		{"web_1", false},
		{"web.1", false},
		{"../x", false},
		{"we b", false},
	} {
		err := CheckName("vm", tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("CheckName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "vm name") {
			t.Errorf("CheckName(%q) = %q: does not name the thing", tc.name, err)
		}
	}
}
