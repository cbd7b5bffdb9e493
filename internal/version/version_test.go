package version

import (
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestReleaseSetAtLinkTimeWins(t *testing.T) {
	defer func(old string) { release = old }(release)
	release = "v9.8.7"
	assert.Equal(t, "v9.8.7", Version())
	assert.True(t, strings.HasPrefix(String(), "v9.8.7 ("), String())
}

func TestStringNamesTheGoVersion(t *testing.T) {
	defer func(old string) { release = old }(release)
	release = ""
	// A test binary records no module version: the build is "devel".
	assert.Equal(t, "devel", Version())
	assert.True(t, strings.HasSuffix(String(), runtime.Version()+")"), String())
}
