package soak

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"kvproxy/bench/loadgen"
	"kvproxy/internal/leaktest"
)

// TestMain fails the package's tests if a goroutine they started is still
// running when they end, and removes the kvproxy binary they shared.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, append(leaktest.Options(), goleak.Cleanup(func(code int) {
		if kvproxyDir != "" {
			_ = os.RemoveAll(kvproxyDir)
		}
		os.Exit(code)
	}))...)
}

// kvproxyBuild is the kvproxy binary the tests that pass Config.KvproxyBinary
// share, built once into kvproxyDir (removed by TestMain).
var kvproxyBuild struct {
	once sync.Once
	bin  string
	err  error
}

var kvproxyDir string

func buildKvproxy(t *testing.T) string {
	t.Helper()
	kvproxyBuild.once.Do(func() {
		// A cold build cache on a loaded machine takes a while.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if kvproxyDir, kvproxyBuild.err = os.MkdirTemp("", "soak-test-"); kvproxyBuild.err == nil {
			kvproxyBuild.bin, kvproxyBuild.err = loadgen.BuildKvproxy(ctx, kvproxyDir)
		}
	})
	require.NoError(t, kvproxyBuild.err)
	return kvproxyBuild.bin
}
