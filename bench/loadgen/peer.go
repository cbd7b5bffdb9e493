package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// PeerProxy is another proxy to measure beside kvproxy and twemproxy: any
// binary that, started with Args, serves the cluster on a loopback port.
//
// Args may hold placeholders, replaced in every argument:
//
//	{port}   the port it must listen on (127.0.0.1)
//	{addr}   127.0.0.1:{port}
//	{seeds}  the cluster nodes' host:port, comma-separated
//	{seed}   the first of them
//	{host}   the first node's host, {seedport} its port
//	{dir}    a temporary directory of its own (its working directory, for
//	         a configuration file or a log)
//
// One of {port} and {addr} must appear, or the proxy could not be reached.
type PeerProxy struct {
	// Name labels its results; lower-case letters, digits, '-' and '_',
	// and not a built-in target's name.
	Name string
	// Binary is its executable, a path or a name looked up in PATH.
	Binary string
	Args   []string
}

var peerNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// ParsePeerProxy parses NAME=PATH[:ARGS], ARGS being space-separated
// arguments with placeholders (see PeerProxy).
func ParsePeerProxy(spec string) (PeerProxy, error) {
	name, rest, ok := strings.Cut(spec, "=")
	if !ok {
		return PeerProxy{}, fmt.Errorf("%q is not NAME=PATH:ARGS", spec)
	}
	bin, args, _ := strings.Cut(rest, ":")
	p := PeerProxy{Name: strings.TrimSpace(name), Binary: strings.TrimSpace(bin), Args: strings.Fields(args)}
	return p, p.Validate()
}

// Validate reports what makes p unusable.
func (p PeerProxy) Validate() error {
	switch {
	case !peerNamePattern.MatchString(p.Name):
		return fmt.Errorf("peer name %q: want lower-case letters, digits, '-' and '_'", p.Name)
	case slices.Contains(proxyTargets, p.Name):
		return fmt.Errorf("peer name %q is a built-in target's", p.Name)
	case p.Binary == "":
		return fmt.Errorf("peer %s has no binary", p.Name)
	}
	for _, a := range p.Args {
		if strings.Contains(a, "{port}") || strings.Contains(a, "{addr}") {
			return nil
		}
	}
	return fmt.Errorf("peer %s: its arguments name neither {port} nor {addr}, so it cannot be given a free port", p.Name)
}

// validatePeers checks every peer and that no name is used twice.
func validatePeers(peers []PeerProxy) error {
	seen := map[string]bool{}
	for _, p := range peers {
		if err := p.Validate(); err != nil {
			return err
		}
		if seen[p.Name] {
			return fmt.Errorf("peer %s is named twice", p.Name)
		}
		seen[p.Name] = true
	}
	return nil
}

// expandPeerArgs replaces the placeholders of args.
func expandPeerArgs(args []string, port int, seeds []string, dir string) []string {
	host, seedPort, _ := net.SplitHostPort(seeds[0])
	r := strings.NewReplacer("{port}", strconv.Itoa(port), "{addr}", loopbackAddr(port),
		"{seeds}", strings.Join(seeds, ","), "{seed}", seeds[0], "{host}", host, "{seedport}", seedPort,
		"{dir}", dir)
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = r.Replace(a)
	}
	return out
}

// peerStartTimeout bounds how long a peer may take to answer PING: an
// unknown binary may never listen where it was told to.
const peerStartTimeout = 30 * time.Second

// Peer is a running PeerProxy. Close kills it and removes its directory.
type Peer struct {
	*server
}

// LaunchPeerProxy starts p in front of seeds and returns once it answers
// PING on its port. Its output is kept in {dir}/NAME.log and quoted when it
// fails to start. It dies with this process.
func LaunchPeerProxy(ctx context.Context, p PeerProxy, seeds []string) (*Peer, error) {
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	if len(seeds) == 0 {
		return nil, errors.New("loadgen: LaunchPeerProxy needs a seed")
	}
	bin, err := lookBinary(p.Binary, p.Name)
	if err != nil {
		return nil, err
	}
	// The process runs in its own directory, where a relative path would
	// no longer resolve.
	if bin, err = filepath.Abs(bin); err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, peerStartTimeout)
	defer cancel()
	s, err := launchServer(ctx, "loadgen-peer-"+p.Name+"-", "", func(dir string, port int) (*process, error) {
		return startProcess(dir, p.Name+".log", bin, expandPeerArgs(p.Args, port, seeds, dir)...)
	})
	if err != nil {
		return nil, fmt.Errorf("loadgen: peer %s: %w", p.Name, err)
	}
	return &Peer{s}, nil
}
