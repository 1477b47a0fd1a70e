package cli

import "testing"

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in, unit string
		want     int // MiB; 0: an error
	}{
		{"512M", "M", 512},
		{"512MB", "M", 489}, // 512×10⁶ bytes
		{"512MiB", "M", 512},
		{"2G", "M", 2048},
		{"2g", "M", 2048},
		{"2GB", "M", 1908}, // 2×10⁹ bytes, rounded up
		{"1000MB", "M", 954},
		{"2GiB", "M", 2048},
		{"1TB", "M", 953675},
		{"1.5GiB", "M", 1536},
		{" 3G ", "M", 3072},
		{"1T", "M", 1024 * 1024},
		{"1024", "M", 1024},
		{"20", "G", 20 * 1024},
		{"0.5", "G", 512},
		{"", "M", 0},
		{"0", "M", 0},
		{"0G", "M", 0},
		{"-1G", "M", 0},
		{"G", "M", 0},
		{"abc", "M", 0},
		{"1.2.3G", "M", 0},
		{"5Q", "M", 0},
		{"5K", "M", 0},
		{"2gib", "M", 2048},
		{"2Gi", "M", 0},
		{"5KB", "M", 0},
	} {
		got, err := parseSize(tc.in, tc.unit)
		switch {
		case tc.want == 0 && err == nil:
			t.Errorf("parseSize(%q, %q) = %d, want an error", tc.in, tc.unit, got)
		case tc.want != 0 && (err != nil || got != tc.want):
			t.Errorf("parseSize(%q, %q) = %d, %v; want %d", tc.in, tc.unit, got, err, tc.want)
		}
	}
}
