package images

import (
	"fmt"
	"net/url"
	"path"
	"path/filepath"
	"strings"

	"github.com/butter-cloud/butter/helperapi"
)

// name is how an image from s is shown.
func sourceName(s helperapi.Source) string {
	switch {
	case s.Catalog != "":
		return s.Catalog
	case s.URL != "":
		u, err := url.Parse(s.URL)
		if err != nil {
			return s.URL
		}
		return path.Base(u.Path)
	case s.File != nil:
		return baseName(s.File.Path)
	case s.Kernel != nil:
		return baseName(s.Kernel.Path)
	}
	return ""
}

// baseName takes the last element of an operator-side path, whichever
// separator the operator's system uses.
func baseName(p string) string {
	p = filepath.ToSlash(strings.ReplaceAll(p, `\`, "/"))
	return path.Base(p)
}

// checkUpload checks that the transport filled f.
func checkUpload(what string, f *helperapi.File) error {
	switch {
	case f.Body == nil:
		return fmt.Errorf("upload %s %s: no data attached (the transport sets Body, Size and SHA256)", what, f.Path)
	case f.Size < 0:
		return fmt.Errorf("upload %s %s: size %d is negative", what, f.Path, f.Size)
	}
	if _, err := helperapi.ParseChecksum("sha256:" + f.SHA256); err != nil {
		return fmt.Errorf("upload %s %s: %w", what, f.Path, err)
	}
	return nil
}
