// Package version tells which build of kvproxy is running: the release set
// at link time, else what the Go toolchain recorded (module version, VCS
// revision and whether the tree had uncommitted changes).
package version

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// release is set by a release build:
//
//	go build -ldflags "-X kvproxy/internal/version.release=v1.2.3" ./cmd/kvproxy
var release string

// Version is the build's version: the release, else the module version go
// install recorded, else "devel".
func Version() string {
	if release != "" {
		return release
	}
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return "devel"
}

// String is the one line `kvproxy --version` prints: the version, the VCS
// revision (marked when built from a modified tree) and the Go version, e.g.
// "v1.2.3 (rev 55a57e0c8e1f, go1.26.8)".
func String() string {
	var parts []string
	if rev := revision(); rev != "" {
		parts = append(parts, "rev "+rev)
	}
	parts = append(parts, runtime.Version())
	return Version() + " (" + strings.Join(parts, ", ") + ")"
}

// revision is the first 12 hex digits of the commit built, with "+dirty" for
// a tree with uncommitted changes; empty when the build recorded none (go
// test, go run outside a checkout).
func revision() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if rev == "" {
		return ""
	}
	return rev[:min(12, len(rev))] + dirty
}
