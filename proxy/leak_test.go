package proxy

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"kvproxy/bench/cluster"
	"kvproxy/internal/leaktest"
)

// TestMain fails the package's tests if a goroutine they started is still
// running when they end, once the spare clusters are closed.
func TestMain(m *testing.M) { goleak.VerifyTestMain(closingSpare{m}, leaktest.Options()...) }

// closingSpare runs the tests, then stops the servers the spares launched
// for tests that never came.
type closingSpare struct{ m *testing.M }

func (c closingSpare) Run() int {
	code := c.m.Run()
	for _, spare := range []*cluster.Spare{threeMasterSpare, oneMasterSpare} {
		if err := spare.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "closing a spare cluster:", err)
			code = 1
		}
	}
	return code
}
