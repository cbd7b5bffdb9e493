package soak

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"kvproxy/bench/loadgen"
	"kvproxy/internal/leaktest"
)

// TestMain fails the package's tests if a goroutine they started is still
// running when they end, and removes the kvproxy binary they shared.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, append(leaktest.Options(), goleak.Cleanup(func(code int) {
		kvproxyBuild.Remove()
		os.Exit(code)
	}))...)
}

// kvproxyBuild is the kvproxy binary the package's tests share.
var kvproxyBuild loadgen.SharedKvproxy
