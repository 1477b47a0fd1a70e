package helperapi

import (
	"fmt"
	"regexp"
)

// MaxNameLength bounds every name butter gives out: machines, networks
// and VMs. 32 fits in a hostname label and in the names derived from it.
const MaxNameLength = 32

// nameRE is the one name rule: lower-case letters, digits and dashes, not
// starting or ending with a dash (so it is a valid hostname label).
var nameRE = regexp.MustCompile(fmt.Sprintf(`^[a-z0-9]([a-z0-9-]{0,%d}[a-z0-9])?$`, MaxNameLength-2))

// NameRule says what a name must look like, for error messages.
var NameRule = fmt.Sprintf("use 1 to %d lower-case letters, digits and dashes, not starting or ending with a dash", MaxNameLength)

// ValidName reports whether name passes the name rule.
func ValidName(name string) bool { return nameRE.MatchString(name) }

// CheckName checks a name of kind ("machine", "network", "vm") against the
// name rule, with an error that says how to fix it.
func CheckName(kind, name string) error {
	if ValidName(name) {
		return nil
	}
	if name == "" {
		return fmt.Errorf("%s name is empty: %s", kind, NameRule)
	}
	return fmt.Errorf("%s name %q: %s", kind, name, NameRule)
}

// RefuseName is CheckName for a name that came over the wire: a bad name
// is a *RemoteError with CodeInvalid, so the caller learns its request was
// refused and nothing changed. The receiving side checks every name with it
// before the name is used, above all before it becomes part of a path.
func RefuseName(kind, name string) error {
	if err := CheckName(kind, name); err != nil {
		return &RemoteError{Code: CodeInvalid, Message: err.Error()}
	}
	return nil
}
