package router

import (
	"testing"

	"go.uber.org/goleak"

	"kvproxy/bench/cluster"
	"kvproxy/internal/leaktest"
)

// TestMain fails the package's tests if a goroutine they started is still
// running when they end, once the spare clusters are closed.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(cluster.WithSpares(m, twoByOneSpare, oneMasterSpare), leaktest.Options()...)
}
