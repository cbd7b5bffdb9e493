package loadgen

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"
)

// SharedKvproxy is a kvproxy binary the tests of a package share: built by
// the first test that asks for it, removed by the package's TestMain with
// Remove. A link of kvproxy takes seconds; a package builds it once.
type SharedKvproxy struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// Binary builds kvproxy on the first call (see BuildKvproxy) and returns
// its path. Without the go command it skips tb, or fails it when CI=true;
// a failed build fails every test that asks.
func (s *SharedKvproxy) Binary(tb testing.TB) string {
	tb.Helper()
	RequireBinary(tb, "go")
	s.once.Do(func() {
		// A cold build cache on a loaded machine takes a while.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if s.dir, s.err = os.MkdirTemp("", "kvproxy-build-"); s.err == nil {
			s.bin, s.err = BuildKvproxy(ctx, s.dir)
		}
	})
	if s.err != nil {
		tb.Fatal(s.err)
	}
	return s.bin
}

// Remove deletes the binary, if one was built.
func (s *SharedKvproxy) Remove() {
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}
