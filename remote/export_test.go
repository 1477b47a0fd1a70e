package remote

// For the external tests (package remote_test), which may import lab
// (lab imports remote).

// SupervisedLog is where the supervised daemon logs on a machine.
const SupervisedLog = supervisedLog

// DropConnection closes m's SSH connection, as a network failure would.
func DropConnection(m *Machine) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ssh.conn.Close()
}
