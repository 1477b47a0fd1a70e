//go:build !unix

package inventory

// processAlive cannot tell here: a reservation lasts until
// ReservationTTL.
func processAlive(pid int) bool { return pid > 0 }
