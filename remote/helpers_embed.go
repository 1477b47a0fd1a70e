//go:build butter_embed

package remote

import _ "embed"

// The helpers a release build carries (see the recipe in doc.go).
var (
	//go:embed helpers/butter-linux-amd64
	helperAMD64 []byte
	//go:embed helpers/butter-linux-arm64
	helperARM64 []byte
)

func embeddedHelper(arch string) []byte {
	switch arch {
	case "amd64":
		return helperAMD64
	case "arm64":
		return helperARM64
	}
	return nil
}
