//go:build !unix

package proxy

import "net"

// peerHungUp cannot watch a socket without reading it on this platform: a
// client's hang-up shows once the blocking command ends.
func peerHungUp(net.Conn) bool { return false }

// shutdown closes the client's connection: whoever serves it then fails to
// read and ends the session.
func (c *client) shutdown() { _ = c.nc.Close() }
