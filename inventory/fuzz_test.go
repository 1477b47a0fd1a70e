package inventory

import (
	"os"
	"path/filepath"
	"testing"
)

// The inventory loader takes any bytes without a panic or a hang: every
// file of testdata (good and bad) seeds it.
func FuzzParse(f *testing.F) {
	for _, glob := range []string{"testdata/*.yaml", "testdata/bad/*"} {
		files, _ := filepath.Glob(glob)
		for _, name := range files {
			if data, err := os.ReadFile(name); err == nil {
				f.Add(data)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		inv, err := Parse(data)
		if err == nil && inv == nil {
			t.Fatal("Parse returned neither an inventory nor an error")
		}
	})
}
