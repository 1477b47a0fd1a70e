//go:build !linux

package resolver

import "net"

func listenConfig() net.ListenConfig { return net.ListenConfig{} }

func explainListen(err error) error { return err }
