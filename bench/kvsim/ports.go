package kvsim

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
)

// FreeConsecutivePorts returns a ClusterConfig.BasePort for count nodes: the
// first of count consecutive loopback ports that were free a moment ago.
// They lie below the kernel's ephemeral range, where outgoing connections
// are less likely to take one before the cluster binds it.
func FreeConsecutivePorts(count int) (int, error) {
	for range 100 {
		base := 20000 + rand.IntN(10000)
		var lns []net.Listener
		for i := range count {
			ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(base+i)))
			if err != nil {
				break
			}
			lns = append(lns, ln)
		}
		for _, ln := range lns {
			if err := ln.Close(); err != nil {
				return 0, fmt.Errorf("kvsim: %w", err)
			}
		}
		if len(lns) == count {
			return base, nil
		}
	}
	return 0, fmt.Errorf("kvsim: no %d consecutive free ports found", count)
}
