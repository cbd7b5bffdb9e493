package cluster

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// busPortOffset is the distance from a node's client port to its cluster
// bus port when cluster-port is not set.
const busPortOffset = 10000

const loopback = "127.0.0.1"

// portPairAttempts bounds the search for free port pairs.
const portPairAttempts = 2000

// reservePortPairs returns n client ports p such that both p and
// p+busPortOffset were free on loopback a moment ago. All pairs are held at
// once, so they are distinct and never overlap one another's bus port; they
// are released on return, and a start-up that loses the race retries.
//
// Ports are drawn at random below the kernel's ephemeral range when it
// leaves room: outgoing connections (the cluster's own bus links among them)
// then cannot take a port a node needs when it is restarted.
func reservePortPairs(n int) ([]int, error) {
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	low, high := pickRange()
	ports := make([]int, 0, n)
	for attempt := 0; len(ports) < n; attempt++ {
		if attempt == portPairAttempts {
			return nil, fmt.Errorf("cluster: no free port pair (p, p+%d) on %s after %d attempts", busPortOffset, loopback, attempt)
		}
		var client net.Listener
		var err error
		if low < high {
			client, err = listen(low + rand.IntN(high-low))
		} else {
			client, err = listen(0)
		}
		if err != nil {
			continue
		}
		port := client.Addr().(*net.TCPAddr).Port
		if port+busPortOffset > 65535 {
			client.Close()
			continue
		}
		bus, err := listen(port + busPortOffset)
		if err != nil {
			client.Close()
			continue
		}
		held = append(held, client, bus)
		ports = append(ports, port)
	}
	return ports, nil
}

func listen(port int) (net.Listener, error) {
	return net.Listen("tcp4", net.JoinHostPort(loopback, strconv.Itoa(port)))
}

// pickRange returns [low, high) for client ports whose bus ports stay below
// the ephemeral range, or an empty range when there is no room for one.
func pickRange() (low, high int) {
	ephemeralLow := 32768 // Linux default
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if fields := strings.Fields(string(b)); len(fields) == 2 {
			if v, err := strconv.Atoi(fields[0]); err == nil {
				ephemeralLow = v
			}
		}
	}
	return ephemeralRoom(ephemeralLow)
}

func ephemeralRoom(ephemeralLow int) (low, high int) {
	const minPort = 10000
	const minWidth = 1000
	high = ephemeralLow - busPortOffset
	if high-minPort < minWidth {
		return 0, 0
	}
	return minPort, high
}

// errAddrInUse marks a start-up that failed because a port was taken between
// reservePortPairs and the server's bind.
var errAddrInUse = errors.New("address already in use")
