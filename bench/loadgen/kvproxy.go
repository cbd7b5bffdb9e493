package loadgen

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
)

// kvproxyPackage is the import path of kvproxy's main package.
const kvproxyPackage = "kvproxy/cmd/kvproxy"

// BuildKvproxy compiles kvproxy into dir/kvproxy with the go command found
// in PATH and returns the binary's path. The working directory must be
// inside the kvproxy module (as it is under go test and go run).
func BuildKvproxy(ctx context.Context, dir string) (string, error) {
	goBin, err := lookBinary("", "go")
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "kvproxy")
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", out, kvproxyPackage)
	cmd.SysProcAttr = dieWithParent()
	if output, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("loadgen: go build %s (run from inside the kvproxy module): %w: %s",
			kvproxyPackage, err, strings.TrimSpace(string(output)))
	}
	return out, nil
}

// KvproxyOptions configures a kvproxy process.
type KvproxyOptions struct {
	// Binary is the kvproxy executable (see BuildKvproxy); required, since
	// kvproxy is not installed system-wide.
	Binary string
	// Seeds are cluster nodes' host:port addresses; at least one.
	Seeds []string
	// ExtraArgs are more flags, after the ones LaunchKvproxy sets (a later
	// flag wins, so they may override --log-level).
	ExtraArgs []string
}

// Kvproxy is a running kvproxy listening on a loopback port. Close kills
// it and removes its directory.
type Kvproxy struct {
	*server
}

// LaunchKvproxy starts kvproxy with --seeds, --listen on a free loopback
// port and --log-level warn, and returns once it answers PING. Its log
// (stderr) is kept in a temporary directory and quoted when it fails to
// start. ctx bounds the start only; Close stops it. It also dies with this
// process.
func LaunchKvproxy(ctx context.Context, opts KvproxyOptions) (*Kvproxy, error) {
	if opts.Binary == "" {
		return nil, errors.New("loadgen: KvproxyOptions.Binary is empty")
	}
	if len(opts.Seeds) == 0 {
		return nil, errors.New("loadgen: KvproxyOptions.Seeds is empty")
	}
	bin, err := lookBinary(opts.Binary, "kvproxy")
	if err != nil {
		return nil, err
	}
	s, err := launchServer(ctx, "loadgen-kvproxy-", "", func(dir string, port int) (*process, error) {
		args := append([]string{"--listen", loopbackAddr(port), "--seeds", strings.Join(opts.Seeds, ","), "--log-level", "warn"},
			opts.ExtraArgs...)
		return startProcess(dir, "kvproxy.log", bin, args...)
	})
	if err != nil {
		return nil, err
	}
	return &Kvproxy{s}, nil
}
