package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/bench/cluster"
	"kvproxy/internal/tlstest"
)

// Bad TLS flags stop the start with one line naming the flag.
func TestTLSFlagsRejected(t *testing.T) {
	pki := tlstest.New(t, "kvproxy test")
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	require.NoError(t, os.WriteFile(garbage, []byte("not a certificate\n"), 0o600))
	missing := filepath.Join(dir, "missing.pem")
	refused := refusedAddr(t)
	base := []string{"--listen", "127.0.0.1:0", "--seeds", refused}
	withTLS := slices.Concat(base, []string{"--tls-listen", "127.0.0.1:0"})

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"cert without key", with(withTLS, "--tls-cert", pki.ServerCert), "--tls-listen needs --tls-cert and --tls-key"},
		{"cert without tls-listen", with(base, "--tls-cert", pki.ServerCert, "--tls-key", pki.ServerKey), "need --tls-listen"},
		{"missing cert file", with(withTLS, "--tls-cert", missing, "--tls-key", pki.ServerKey), "--tls-cert: open " + missing},
		{"missing key file", with(withTLS, "--tls-cert", pki.ServerCert, "--tls-key", missing), "--tls-key: open " + missing},
		{"garbage cert", with(withTLS, "--tls-cert", garbage, "--tls-key", pki.ServerKey), "--tls-cert " + garbage + " and --tls-key"},
		{"key of another cert", with(withTLS, "--tls-cert", pki.ServerCert, "--tls-key", pki.ClientKey), "private key does not match public key"},
		{"garbage client CA", with(withTLS, "--tls-cert", pki.ServerCert, "--tls-key", pki.ServerKey, "--tls-client-ca", garbage),
			"--tls-client-ca " + garbage + ": no PEM certificate"},
		{"tls-listen is listen", []string{"--listen", "127.0.0.1:7777", "--seeds", refused, "--tls-listen", "127.0.0.1:7777",
			"--tls-cert", pki.ServerCert, "--tls-key", pki.ServerKey}, "give TLS a port of its own"},
		{"nothing to listen on", []string{"--listen", "", "--seeds", refused}, "--listen is empty and there is no --tls-listen"},
		{"backend TLS with the demo", []string{"--listen", "127.0.0.1:0", "--demo", "--backend-tls"}, "--backend-tls and --demo exclude each other"},
		{"backend CA without backend-tls", with(base, "--backend-tls-ca", pki.CAFile), "need --backend-tls"},
		{"backend cert without key", with(base, "--backend-tls", "--backend-tls-cert", pki.ClientCert), "give both or neither"},
		{"missing backend CA", with(base, "--backend-tls", "--backend-tls-ca", missing), "--backend-tls-ca: open " + missing},
		{"garbage backend cert", with(base, "--backend-tls", "--backend-tls-cert", garbage, "--backend-tls-key", pki.ClientKey),
			"--backend-tls-cert " + garbage + " and --backend-tls-key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tc.args, noEnv, &stdout, &stderr)
			assert.Equal(t, exitStartup, code)
			lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
			require.Len(t, lines, 1, "stderr: %q", stderr.String())
			assert.Contains(t, lines[0], tc.want)
		})
	}
}

// with is base followed by more, in a slice of its own.
func with(base []string, more ...string) []string { return slices.Concat(base, more) }

var tlsServingLine = regexp.MustCompile(`msg="kvproxy serving" .*?tls_listen=(\S+)`)

// The binary's TLS end to end, in-process: TLS only on the client side
// (--listen empty) with client certificates required, mutual TLS to a Redis
// Cluster serving TLS only; and the backend's certificate verified: another
// CA, or a name it was not issued for, stops the start naming the cause.
func TestRunTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	pki := tlstest.New(t, "kvproxy test")
	c := cluster.Start(t, cluster.Options{Masters: 1, TLS: &cluster.TLS{
		CertFile: pki.ServerCert, KeyFile: pki.ServerKey, CAFile: pki.CAFile, Client: pki.ClientConfig(true)}})
	backend := []string{"--seeds", c.Addrs()[0], "--backend-tls", "--backend-tls-cert", pki.ClientCert, "--backend-tls-key", pki.ClientKey}

	t.Run("serves", func(t *testing.T) {
		args := append([]string{"--listen", "", "--tls-listen", "127.0.0.1:0", "--tls-cert", pki.ServerCert, "--tls-key", pki.ServerKey,
			"--tls-client-ca", pki.CAFile, "--backend-tls-ca", pki.CAFile}, backend...)
		_, _, stderr, stop := runInBackground(t, args, noEnv)
		m := tlsServingLine.FindStringSubmatch(stderr.String())
		require.NotNil(t, m, stderr.String())
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()

		client := redis.NewClient(&redis.Options{Addr: m[1], TLSConfig: pki.ClientConfig(true)})
		defer client.Close()
		slots, err := client.ClusterSlots(ctx).Result()
		require.NoError(t, err)
		assert.Equal(t, m[1], slots[0].Nodes[0].Addr, "TLS only: the TLS listener is announced")
		require.NoError(t, client.Set(ctx, "over", "tls", 0).Err())
		assert.Equal(t, "tls", client.Get(ctx, "over").Val())

		anonymous := redis.NewClient(&redis.Options{Addr: m[1], TLSConfig: pki.ClientConfig(false), MaxRetries: -1})
		defer anonymous.Close()
		assert.ErrorContains(t, anonymous.Ping(ctx).Err(), "certificate required")
		assert.Equal(t, exitOK, stop())
	})

	stranger := tlstest.New(t, "another CA")
	for _, tc := range []struct {
		name  string
		extra []string
		want  string
	}{
		{"backend of another CA", []string{"--backend-tls-ca", stranger.CAFile}, "certificate signed by unknown authority"},
		{"backend of another name", []string{"--backend-tls-ca", pki.CAFile, "--backend-tls-server-name", "redis.example"},
			"not redis.example"},
		{"plain TCP to a TLS backend", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--listen", "127.0.0.1:0"}, tc.extra...)
			if tc.extra == nil {
				args = append(args, "--seeds", c.Addrs()[0])
			} else {
				args = append(args, backend...)
			}
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), args, noEnv, &stdout, &stderr)
			t.Log(strings.TrimSpace(stderr.String()))
			assert.Equal(t, exitStartup, code, stderr.String())
			assert.Contains(t, stderr.String(), tc.want)
			assert.Contains(t, stderr.String(), c.Addrs()[0], "the error names the node")
		})
	}
}

// TLS clients are told the TLS port: --tls-announce as given, else with
// --announce's host, else the listener's address.
func TestTLSAnnounceAddr(t *testing.T) {
	tlsAddr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 6390}
	discard := slog.New(slog.DiscardHandler)
	var o options
	assert.Equal(t, "127.0.0.1:6390", tlsAnnounceAddr(o, tlsAddr, discard))
	o.announce = "proxy.example:6380"
	assert.Equal(t, "proxy.example:6390", tlsAnnounceAddr(o, tlsAddr, discard))
	o.tls.announce = "tls.example:443"
	assert.Equal(t, "tls.example:443", tlsAnnounceAddr(o, tlsAddr, discard))
}

// issuerOfHandshake runs a TLS handshake between serverCfg and clientCfg
// over loopback and returns the server certificate's issuer, or the error
// either side saw.
func issuerOfHandshake(t *testing.T, serverCfg, clientCfg *tls.Config) (string, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	served := make(chan error, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer nc.Close()
		_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
		served <- tls.Server(nc, serverCfg).Handshake()
	}()
	client, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", ln.Addr().String(), clientCfg)
	if err == nil {
		defer client.Close()
		err = <-served
	}
	if err != nil {
		return "", err
	}
	return client.ConnectionState().PeerCertificates[0].Issuer.CommonName, nil
}

// The configs handed to the listener and the dialler look the files in
// force up per connection: storing newly read ones changes the server
// certificate, the client CAs and the certificate presented to the nodes
// for the next handshake. The digest tells re-read files apart from
// changed ones.
func TestLiveTLSServesTheFilesInForce(t *testing.T) {
	one, two := tlstest.New(t, "one"), tlstest.New(t, "two")
	options := func(p *tlstest.PKI) tlsOptions {
		return tlsOptions{listen: "127.0.0.1:0", cert: p.ServerCert, key: p.ServerKey, clientCA: p.CAFile,
			backend: true, backendCA: one.CAFile, backendCert: p.ClientCert, backendKey: p.ClientKey}
	}
	first, err := options(one).read()
	require.NoError(t, err)
	again, err := options(one).read()
	require.NoError(t, err)
	assert.Equal(t, first.digest, again.digest, "the same files")
	live := newLiveTLS(first)
	server, backend := live.serverConfig(), live.backendConfig(options(one))
	require.NotNil(t, server)
	require.NotNil(t, backend)

	issuer, err := issuerOfHandshake(t, server, one.ClientConfig(true))
	require.NoError(t, err)
	assert.Equal(t, "one CA", issuer)
	presented, err := backend.GetClientCertificate(nil)
	require.NoError(t, err)
	assert.Equal(t, first.backendCert, presented)

	second, err := options(two).read()
	require.NoError(t, err)
	assert.NotEqual(t, first.digest, second.digest)
	live.files.Store(second)
	issuer, err = issuerOfHandshake(t, server, two.ClientConfig(true))
	require.NoError(t, err)
	assert.Equal(t, "two CA", issuer)
	_, err = issuerOfHandshake(t, server, one.ClientConfig(true))
	assert.Error(t, err, "a client certificate of the former CA")
	presented, err = backend.GetClientCertificate(nil)
	require.NoError(t, err)
	assert.Equal(t, second.backendCert, presented)
	assert.Same(t, first.backendCAs, backend.RootCAs, "the nodes' CAs are those at start")

	without := options(two)
	without.backendCert, without.backendKey = "", ""
	none, err := without.read()
	require.NoError(t, err)
	live.files.Store(none)
	presented, err = backend.GetClientCertificate(nil)
	require.NoError(t, err)
	assert.Empty(t, presented.Certificate, "no certificate to present")
}
