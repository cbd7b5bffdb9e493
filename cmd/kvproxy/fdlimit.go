package main

import (
	"fmt"
	"log/slog"
	"runtime"
	"syscall"

	"kvproxy/proxy"
)

// Every client connection takes a file descriptor, and so does each
// blocking command, transaction and subscription, on a cluster connection
// of its own. Besides those the process needs a reserve:
//
//	reservedDescriptors                  listener, stdio, the Go runtime's poller, DNS, log files
//	+ event loops                        one epoll descriptor each (GOMAXPROCS)
//	+ nodes × (--backend-conns           the multiplexed connections
//	           + perNodeDescriptors)     the liveness probe (1), a failover follower (2),
//	                                     idle dedicated connections (proxy.MaxIdleDedicatedPerNode)
//
// with nodes the cluster's nodes, masters and replicas, as the topology
// lists them once loaded (a replica is dialled when it takes over). With
// --demo the simulated cluster lives in the process and holds the other end
// of every one of those connections, so the reserve doubles.
//
// kvproxy wants --max-clients + --max-blocking-conns + that reserve. As
// Redis does, it raises RLIMIT_NOFILE towards that; when the limit stays
// short, the descriptors left after the reserve are shared between clients
// and blocking commands in the ratio of the two flags, with one warning.
// Transactions and subscriptions draw on the blocking commands' share: when
// it runs dry their dials fail with an error to that client, and an accept
// that fails for want of descriptors pauses (proxy.Server.Serve); the
// process keeps serving.
const (
	reservedDescriptors = 32
	perNodeDescriptors  = 1 + 2 + proxy.MaxIdleDedicatedPerNode
)

// descriptorReserve is what the process needs besides clients and blocking
// commands, for a cluster of nodes nodes.
func descriptorReserve(nodes, backendConns int, demo bool) int {
	perNode := nodes * (backendConns + perNodeDescriptors)
	if demo {
		perNode *= 2
	}
	return reservedDescriptors + runtime.GOMAXPROCS(0) + perNode
}

// descriptorShare is how many clients and blocking commands fit in limit
// descriptors beside reserve, for the configured clients and blocking; ok
// is false when not even one client and one blocking command do.
func descriptorShare(limit uint64, reserve, clients, blocking int) (fitClients, fitBlocking int, ok bool) {
	want := uint64(reserve + clients + blocking)
	if limit >= want {
		return clients, blocking, true
	}
	if limit < uint64(reserve)+2 {
		return 0, 0, false
	}
	left := int(limit) - reserve
	fitBlocking = max(1, left*blocking/(clients+blocking))
	return left - fitBlocking, fitBlocking, true
}

// fitDescriptors raises the open file limit as far as opts needs for a
// cluster of nodes nodes and, when it stays short, lowers opts' client and
// blocking command limits to what it allows, with one warning. It fails
// when not even one client fits.
func fitDescriptors(opts *options, nodes int, logger *slog.Logger) error {
	reserve := descriptorReserve(nodes, opts.backendConns, opts.demo)
	want := reserve + opts.maxClients + opts.maxBlockingConns
	limit, err := raiseOpenFileLimit(uint64(want))
	if err != nil {
		logger.Warn("cannot read the open file limit: --max-clients kept as given", "err", err)
		return nil
	}
	clients, blocking, ok := descriptorShare(limit, reserve, opts.maxClients, opts.maxBlockingConns)
	if !ok {
		return fmt.Errorf("the open file limit (%d) leaves no descriptor for clients after the %d kvproxy reserves for %d cluster nodes x (--backend-conns %d + %d): raise it to %d (ulimit -n, systemd LimitNOFILE=)",
			limit, reserve, nodes, opts.backendConns, perNodeDescriptors, want)
	}
	if clients < opts.maxClients {
		logger.Warn("open file limit too low for --max-clients: serving fewer clients; raise the limit (ulimit -n, systemd LimitNOFILE=) to serve them all",
			"open_file_limit", limit, "needed", want, "reserved", reserve,
			"max_clients", clients, "max_blocking_conns", blocking,
			"configured_max_clients", opts.maxClients, "configured_max_blocking_conns", opts.maxBlockingConns)
	}
	opts.maxClients, opts.maxBlockingConns = clients, blocking
	return nil
}

// raiseOpenFileLimit raises RLIMIT_NOFILE's soft limit to want if it is
// lower, as Redis does: the hard limit too when the process may (root),
// else as far as the hard limit. It returns the soft limit in force.
func raiseOpenFileLimit(want uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur >= want {
		return lim.Cur, nil
	}
	if lim.Max < want {
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: want, Max: want}) == nil {
			return want, nil
		}
	}
	raised := syscall.Rlimit{Cur: min(want, lim.Max), Max: lim.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err != nil {
		return lim.Cur, nil // the limit in force stands
	}
	return raised.Cur, nil
}
