package proxy

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"kvproxy/internal/leaktest"
)

// TestMain fails the package's tests if a goroutine they started is still
// running when they end, once the spare clusters are closed.
func TestMain(m *testing.M) { goleak.VerifyTestMain(closingSpare{m}, leaktest.Options()...) }

// closingSpare runs the tests, then closes the clusters threeMasterSpare
// prepared for tests that never came.
type closingSpare struct{ m *testing.M }

func (c closingSpare) Run() int {
	code := c.m.Run()
	if err := threeMasterSpare.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "closing the spare cluster:", err)
		code = 1
	}
	return code
}
