package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/internal/tlstest"
)

// reloadConfig is a configuration file for the SIGHUP test's kvproxy.
func reloadConfig(seeds []string, password, level string, backendConns int, writerPassword string) string {
	return "seeds: [" + strings.Join(seeds, ", ") + "]\n" +
		"password: " + password + "\n" +
		"admin-password: adm-secret-pw\n" +
		"log-level: " + level + "\n" +
		"backend-conns: " + map[int]string{4: "4", 8: "8"}[backendConns] + "\n" +
		"max-clients: 50\n" +
		"users:\n" +
		"  - {name: reader, password: r-pw, role: read-only}\n" +
		"  - {name: writer, password: " + writerPassword + ", role: read-write}\n"
}

// resetConnection closes c with a TCP reset, an end of connection the
// proxy logs at debug level.
func resetConnection(t *testing.T, c *rawClient) {
	t.Helper()
	require.NoError(t, c.conn.(*net.TCPConn).SetLinger(0))
	require.NoError(t, c.conn.Close())
}

// SIGHUP reloads the file: a new password is accepted and the old one
// refused, the log level changes, users change, and a setting that cannot
// change live is logged as needing a restart.
func TestSighupReloadsPasswordsUsersAndLogLevel(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the kvproxy binary")
	}
	seeds := startSim(t)
	path := writeConfig(t, reloadConfig(seeds, "old-pw", "info", 4, "w-pw"))
	p := startBinary(t, kvproxyBuild.Binary(t), 0, "--config", path)

	kept := dialRaw(t, p.addr)
	require.Equal(t, "+OK", kept.do(t, "AUTH old-pw"))
	require.Equal(t, "+OK", kept.do(t, "SET k v"))
	reader := dialRaw(t, p.addr)
	require.Equal(t, "+OK", reader.do(t, "AUTH reader r-pw"))
	assert.Equal(t, "-NOPERM this user has no permissions to run the 'set' command", reader.do(t, "SET k x"))
	require.Equal(t, "+OK", reader.do(t, "MULTI"))
	assert.Equal(t, "-NOPERM this user has no permissions to run the 'incr' command", reader.do(t, "INCR n"), "inside MULTI too")
	assert.True(t, strings.HasPrefix(reader.do(t, "EXEC"), "-EXECABORT"))
	writer := dialRaw(t, p.addr)
	require.Equal(t, "+OK", writer.do(t, "AUTH writer w-pw"))
	assert.True(t, strings.HasPrefix(writer.do(t, "CLIENT LIST"), "-NOPERM"), "admin commands need an admin")

	// At info level a reset connection is not logged. It answers a PING
	// first so that the proxy has accepted it: a connection still in the
	// accept queue would leave the count at 3 and end after the reload.
	quiet := dialRaw(t, p.addr)
	require.Equal(t, "-NOAUTH Authentication required.", quiet.do(t, "PING"))
	resetConnection(t, quiet)
	require.Eventually(t, func() bool { return kept.info(t, "connected_clients") == "3" }, 10*time.Second, 10*time.Millisecond)

	require.NoError(t, os.WriteFile(path, []byte(reloadConfig(seeds, "new-pw", "debug", 8, "w2-pw")), 0o600))
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool { return strings.Contains(p.stderr.String(), "reload: configuration changed") },
		10*time.Second, 10*time.Millisecond)
	logs := p.stderr.String()
	assert.Contains(t, logs, `changed="log-level=debug password=<masked> users"`)
	assert.Contains(t, logs, `needs_restart=backend-conns`)
	assert.NotContains(t, logs, `msg="client connection closed"`, "logged before the reload at info level")
	for _, secret := range []string{"old-pw", "new-pw", "w-pw", "w2-pw", "r-pw", "adm-secret-pw"} {
		assert.NotContains(t, logs, secret)
	}

	fresh := dialRaw(t, p.addr)
	assert.Equal(t, "-WRONGPASS invalid username-password pair or user is disabled.", fresh.do(t, "AUTH old-pw"))
	assert.Equal(t, "+OK", fresh.do(t, "AUTH new-pw"))
	assert.Equal(t, "-WRONGPASS invalid username-password pair or user is disabled.", fresh.do(t, "AUTH writer w-pw"))
	assert.Equal(t, "+OK", fresh.do(t, "AUTH writer w2-pw"))
	assert.Equal(t, "$1", kept.do(t, "GET k"), "an authenticated connection keeps its user")
	assert.Equal(t, "v", kept.line(t))
	assert.Equal(t, "+OK", writer.do(t, "SET k w"), "a user whose password changed stays signed in")

	// At debug level it is.
	resetConnection(t, dialRaw(t, p.addr))
	require.Eventually(t, func() bool { return strings.Contains(p.stderr.String(), `msg="client connection closed"`) },
		10*time.Second, 10*time.Millisecond)

	// A bad file changes nothing and says why.
	require.NoError(t, os.WriteFile(path, []byte("seeds: ["+seeds[0]+"]\npassword: newest\nmax-clients: 0\nhold-timeout: soon\n"), 0o600))
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool { return strings.Contains(p.stderr.String(), "reload refused") },
		10*time.Second, 10*time.Millisecond)
	assert.Contains(t, p.stderr.String(), "hold-timeout: parse error")
	assert.Contains(t, p.stderr.String(), "--max-clients 0")
	assert.Equal(t, "+OK", dialRaw(t, p.addr).do(t, "AUTH new-pw"))
	assert.True(t, p.running())
}

// SIGHUP re-reads the TLS files under the same names: a renewed server
// certificate and client CA serve the next handshakes, a connection made
// before keeps working, and a broken file is refused with the former
// certificates still in force.
func TestSighupRenewsTLSCertificates(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the kvproxy binary")
	}
	one, two := tlstest.New(t, "one"), tlstest.New(t, "two")
	dir := t.TempDir()
	cert, key, clientCA := filepath.Join(dir, "proxy.crt"), filepath.Join(dir, "proxy.key"), filepath.Join(dir, "clients.crt")
	install := func(p *tlstest.PKI) {
		for from, to := range map[string]string{p.ServerCert: cert, p.ServerKey: key, p.CAFile: clientCA} {
			data, err := os.ReadFile(from)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(to, data, 0o600))
		}
	}
	install(one)
	p := startBinary(t, kvproxyBuild.Binary(t), 0, "--seeds", strings.Join(startSim(t), ","),
		"--tls-listen", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key, "--tls-client-ca", clientCA)
	m := tlsServingLine.FindStringSubmatch(p.stderr.String())
	require.NotNil(t, m, p.stderr.String())
	tlsAddr := m[1]

	// The client trusts both CAs and presents the certificate of one.
	trusted := x509.NewCertPool()
	for _, ca := range []string{one.CAFile, two.CAFile} {
		data, err := os.ReadFile(ca)
		require.NoError(t, err)
		require.True(t, trusted.AppendCertsFromPEM(data))
	}
	config := func(p *tlstest.PKI) *tls.Config {
		c := p.ClientConfig(true)
		c.RootCAs = trusted
		return c
	}
	// ping dials, PINGs and returns the issuer of the proxy's certificate.
	ping := func(client *tls.Config) (string, error) {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", tlsAddr, client)
		if err != nil {
			return "", err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write([]byte("PING\r\n")); err != nil {
			return "", err
		}
		reply := make([]byte, len("+PONG\r\n"))
		if _, err := io.ReadFull(conn, reply); err != nil {
			return "", err
		}
		if string(reply) != "+PONG\r\n" {
			return "", fmt.Errorf("reply %q", reply)
		}
		return conn.ConnectionState().PeerCertificates[0].Issuer.CommonName, nil
	}
	issuer, err := ping(config(one))
	require.NoError(t, err)
	assert.Equal(t, "one CA", issuer)
	kept, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", tlsAddr, config(one))
	require.NoError(t, err)
	t.Cleanup(func() { _ = kept.Close() })

	install(two)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool { return strings.Contains(p.stderr.String(), "reload: configuration changed") },
		10*time.Second, 10*time.Millisecond)
	assert.Contains(t, p.stderr.String(), `changed=tls-files`)
	issuer, err = ping(config(two))
	require.NoError(t, err)
	assert.Equal(t, "two CA", issuer)
	_, err = ping(config(one))
	assert.Error(t, err, "a client certificate of the CA no longer named")
	require.NoError(t, kept.SetDeadline(time.Now().Add(5*time.Second)))
	_, err = kept.Write([]byte("PING\r\n"))
	require.NoError(t, err)
	reply := make([]byte, len("+PONG\r\n"))
	_, err = io.ReadFull(kept, reply)
	require.NoError(t, err, "a connection made before the reload")
	assert.Equal(t, "+PONG\r\n", string(reply))

	require.NoError(t, os.WriteFile(cert, []byte("not a certificate"), 0o600))
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool { return strings.Contains(p.stderr.String(), "reload refused") },
		10*time.Second, 10*time.Millisecond)
	assert.Contains(t, p.stderr.String(), "--tls-cert "+cert)
	issuer, err = ping(config(two))
	require.NoError(t, err)
	assert.Equal(t, "two CA", issuer, "the certificate in force stays")
	assert.True(t, p.running())
}
