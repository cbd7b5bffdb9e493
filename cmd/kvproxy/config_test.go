package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/proxy"
)

// writeConfig writes text as a configuration file and returns its path.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kvproxy.yaml")
	require.NoError(t, os.WriteFile(path, []byte(text), 0o600))
	return path
}

func TestConfigFilePrecedence(t *testing.T) {
	path := writeConfig(t, `
seeds: [f:1, f:2]
hold-timeout: 1s
max-clients: 100
backend-conns: 2
log-level: warn
`)
	env := map[string]string{"KVPROXY_HOLD_TIMEOUT": "2s", "KVPROXY_MAX_CLIENTS": "200"}
	o, err := parseOptions([]string{"--config", path, "--max-clients", "300"}, envOf(env))
	require.NoError(t, err)
	assert.Equal(t, []string{"f:1", "f:2"}, o.seeds, "file over default")
	assert.Equal(t, 2, o.backendConns, "file over default")
	assert.Equal(t, 2*time.Second, o.holdTimeout, "environment over file")
	assert.Equal(t, 300, o.maxClients, "flag over environment and file")
	assert.Equal(t, 1000, o.maxBlockingConns, "default when no layer sets it")

	// The file may be named by the environment too, and a list may be a
	// comma-separated string.
	path = writeConfig(t, "seeds: 'g:1, g:2'\n")
	o, err = parseOptions(nil, envOf(map[string]string{"KVPROXY_CONFIG": path}))
	require.NoError(t, err)
	assert.Equal(t, []string{"g:1", "g:2"}, o.seeds)
}

func TestConfigFileEveryBadFieldInOneError(t *testing.T) {
	path := writeConfig(t, `
seeds: [a:1]
hold-timeout: forever
max-clients: 0
bogus-setting: 1
client-output-limit: {nested: map}
config: other.yaml
`)
	_, err := parseOptions([]string{"--config", path, "--backend-conns", "0"}, envOf(map[string]string{"KVPROXY_MAX_BULK_LEN": "big"}))
	require.Error(t, err)
	msg := err.Error()
	for _, want := range []string{
		"kvproxy.yaml: hold-timeout: parse error (line 3); bogus-setting: unknown setting (line 5)",
		"--max-clients 0: want 1 to 1000000",
		"bogus-setting: unknown setting (line 5)",
		"client-output-limit: want a value or a list of values",
		"config: unknown setting",
		`KVPROXY_MAX_BULK_LEN="big"`,
		"--backend-conns 0: want 1 to 256",
	} {
		assert.Contains(t, msg, want)
	}
	assert.NotContains(t, msg, "--hold-timeout 0s", "a value that did not parse is not checked again")
	assert.NotContains(t, msg, "\n")

	missing := filepath.Join(t.TempDir(), "missing.yaml")
	_, err = parseOptions([]string{"-h"}, envOf(map[string]string{"KVPROXY_CONFIG": missing}))
	assert.ErrorIs(t, err, flag.ErrHelp, "help whatever the file")
	_, err = parseOptions([]string{"--config", missing}, noEnv)
	assert.ErrorContains(t, err, "--config: open")
	_, err = parseOptions([]string{"--config", writeConfig(t, "- a\n- b\n")}, noEnv)
	assert.ErrorContains(t, err, "want a mapping")
	_, err = parseOptions([]string{"--config", writeConfig(t, "seeds: [a:1]\nseeds: [b:1]\n")}, noEnv)
	assert.ErrorContains(t, err, "seeds: set twice")
}

func TestPrintConfigMasksSecretsAndLoadsAgain(t *testing.T) {
	args := []string{"--seeds", "a:1,b:2", "--hold-timeout", "1.5s", "--max-clients", "77", "--log-level", "debug",
		"--password", "s3cret-pw", "--admin-password", "adm1n-pw", "--backend-password", "b4ck-pw",
		"--controller", "http://c:1", "--controller-namespace", "n", "--controller-cluster", "c", "--controller-token", "t0ken",
		"--print-config"}
	var stdout, stderr bytes.Buffer
	require.Equal(t, exitOK, run(context.Background(), args, noEnv, &stdout, &stderr), stderr.String())
	printed := stdout.String()
	for _, secret := range []string{"s3cret-pw", "adm1n-pw", "b4ck-pw", "t0ken"} {
		assert.NotContains(t, printed, secret)
	}
	for _, line := range []string{"password: <masked>", "admin-password: <masked>", "backend-password: <masked>",
		"controller-token: <masked>", "hold-timeout: 1.5s", "max-clients: 77", "log-level: debug"} {
		assert.Contains(t, printed, line+"\n")
	}
	path := writeConfig(t, printed)

	// Loaded as it is, the masks are refused, each by name.
	_, err := parseOptions([]string{"--config", path}, noEnv)
	require.Error(t, err)
	for _, name := range []string{"--password", "--admin-password", "--backend-password", "--controller-token"} {
		assert.Contains(t, err.Error(), name+" is <masked>")
	}

	// With the secrets from the environment it is the same configuration.
	secrets := envOf(map[string]string{"KVPROXY_PASSWORD": "p", "KVPROXY_ADMIN_PASSWORD": "q",
		"KVPROXY_BACKEND_PASSWORD": "r", "KVPROXY_CONTROLLER_TOKEN": "s"})
	want, err := parseOptions(args[:len(args)-1], noEnv)
	require.NoError(t, err)
	got, err := parseOptions([]string{"--config", path}, secrets)
	require.NoError(t, err)
	want.password, want.adminPassword, want.backendPassword, want.controllerToken = "p", "q", "r", "s"
	got.configFile = ""
	assert.Equal(t, want, got)

	stdout.Reset()
	require.Equal(t, exitOK, run(context.Background(), []string{"--config", path, "--print-config"}, secrets, &stdout, &stderr))
	assert.Equal(t, printed, stdout.String(), "printing the loaded file prints it again")
}

func TestSampleConfigLoads(t *testing.T) {
	path := filepath.Join("..", "..", "examples", "kvproxy.yaml")
	o, err := parseOptions([]string{"--config", path}, noEnv)
	require.NoError(t, err)
	assert.Equal(t, []string{"10.0.0.1:6666", "10.0.0.2:6666"}, o.seeds)
	assert.Equal(t, 2500*time.Millisecond, o.holdTimeout)
	assert.NotEmpty(t, o.password)
	require.Len(t, o.users, 3)
	assert.Equal(t, []proxy.Role{proxy.RoleReadOnly, proxy.RoleReadWrite, proxy.RoleAdmin},
		[]proxy.Role{o.users[0].Role, o.users[1].Role, o.users[2].Role})
}

func TestHelpNamesTheConfigFileAndPrecedence(t *testing.T) {
	text := usage()
	assert.Contains(t, text, "--config file")
	assert.Contains(t, text, "--print-config")
	assert.True(t, strings.Contains(text, "the flag wins over the variable, the variable over the file, the file over the default"))
}

func TestConfigFileUsers(t *testing.T) {
	path := writeConfig(t, `
seeds: [a:1]
users:
  - {name: r, password: r-secret, role: read-only}
  - {name: w, password: w-secret, role: READ-WRITE}
`)
	o, err := parseOptions([]string{"--config", path}, noEnv)
	require.NoError(t, err)
	assert.Equal(t, []proxy.User{{Name: "r", Password: "r-secret", Role: proxy.RoleReadOnly},
		{Name: "w", Password: "w-secret", Role: proxy.RoleReadWrite}}, o.users)

	var stdout, stderr bytes.Buffer
	require.Equal(t, exitOK, run(context.Background(), []string{"--config", path, "--print-config"}, noEnv, &stdout, &stderr), stderr.String())
	assert.NotContains(t, stdout.String(), "secret")
	assert.Contains(t, stdout.String(), "users:\n  - name: r\n    password: <masked>\n    role: read-only\n")
	_, err = parseOptions([]string{"--config", writeConfig(t, stdout.String())}, noEnv)
	assert.ErrorContains(t, err, `user "r": password is <masked>`)

	path = writeConfig(t, `
seeds: [a:1]
admin-password: x
users:
  - {name: a, password: p, role: root}
  - {name: b, role: admin, shell: bash}
  - {name: a, password: q, role: admin}
  - {name: admin, password: q, role: admin}
  - just-a-name
`)
	_, err = parseOptions([]string{"--config", path}, noEnv)
	require.Error(t, err)
	for _, want := range []string{
		`users[0] (line 5): role "root": want read-only, read-write or admin`,
		`users[1] (line 6): unknown key "shell"`,
		`users[1] (b): no password`,
		`users[2]: name "a" twice`,
		`users[3]: name "admin" is the admin user's`,
		`users[4] (line 9): want a mapping`,
	} {
		assert.Contains(t, err.Error(), want)
	}
	assert.NotContains(t, err.Error(), "q,")
}
