package helperapi

// DomainSuffix is the top-level domain of the networks' names: a VM web
// on network blue is web.blue.internal (ICANN keeps .internal for private
// use).
const DomainSuffix = "internal"

// NetworkDomain is network's domain, without the root's dot:
// blue.internal. The network's resolver answers its VMs' names under it,
// and guests have it as search domain, so `web` finds web.blue.internal.
func NetworkDomain(network string) string { return network + "." + DomainSuffix }
