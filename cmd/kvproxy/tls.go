// TLS flags: clients on --tls-listen beside the plain --listen (Redis'
// tls-port beside port), and TLS to the cluster's nodes (--backend-tls).

package main

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"hash"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync/atomic"
)

// tlsOptions are the TLS flags as given; read reads and parses every file
// they name.
type tlsOptions struct {
	// listen is where TLS clients are served; empty: nowhere. announce is
	// what CLUSTER replies name to them; empty: derived (tlsAnnounceAddr).
	listen, announce, cert, key, clientCA string

	backend                                               bool
	backendCA, backendServerName, backendCert, backendKey string
}

func (t *tlsOptions) declare(fs *flag.FlagSet) {
	fs.StringVar(&t.listen, "tls-listen", "",
		"`host:port` the proxy accepts TLS clients on, beside --listen (empty: none; set --listen to empty for TLS only)")
	fs.StringVar(&t.announce, "tls-announce", "",
		"`host:port` CLUSTER SLOTS and CLUSTER NODES report to TLS clients (default: --announce's host with the --tls-listen port)")
	fs.StringVar(&t.cert, "tls-cert", "", "PEM certificate `file` (chain) presented to TLS clients (needed with --tls-listen)")
	fs.StringVar(&t.key, "tls-key", "", "PEM private key `file` of --tls-cert")
	fs.StringVar(&t.clientCA, "tls-client-ca", "",
		"PEM CA `file`: TLS clients must present a certificate it signed (empty: no client certificate asked)")
	fs.BoolVar(&t.backend, "backend-tls", false, "connect to the cluster's nodes over TLS")
	fs.StringVar(&t.backendCA, "backend-tls-ca", "", "PEM CA `file` the nodes' certificates are checked against (empty: the system's roots)")
	fs.StringVar(&t.backendServerName, "backend-tls-server-name", "",
		"`name` the nodes' certificates must hold (empty: the host of each node's address)")
	fs.StringVar(&t.backendCert, "backend-tls-cert", "", "PEM client certificate `file` presented to the nodes (mutual TLS)")
	fs.StringVar(&t.backendKey, "backend-tls-key", "", "PEM private key `file` of --backend-tls-cert")
}

// validate checks the flags together, with listen the plain --listen and
// demo --demo, and reads every file named, so a bad one stops the start
// naming its flag.
func (t tlsOptions) validate(listen string, demo bool) error {
	switch {
	case demo && t.backend:
		return errors.New("--backend-tls and --demo exclude each other: the demo's simulated cluster speaks plain TCP")
	case listen == "" && t.listen == "":
		return errors.New("--listen is empty and there is no --tls-listen: the proxy would serve nobody")
	case t.listen == "" && (t.cert != "" || t.key != "" || t.clientCA != "" || t.announce != ""):
		return errors.New("--tls-cert, --tls-key, --tls-client-ca and --tls-announce need --tls-listen")
	case t.listen != "" && (t.cert == "" || t.key == ""):
		return errors.New("--tls-listen needs --tls-cert and --tls-key")
	case !t.backend && (t.backendCA != "" || t.backendServerName != "" || t.backendCert != "" || t.backendKey != ""):
		return errors.New("--backend-tls-ca, --backend-tls-server-name, --backend-tls-cert and --backend-tls-key need --backend-tls")
	case (t.backendCert == "") != (t.backendKey == ""):
		return errors.New("--backend-tls-cert and --backend-tls-key go together: give both or neither")
	}
	if t.listen != "" {
		if err := checkAddr(t.listen, false); err != nil {
			return fmt.Errorf("--tls-listen %q: %v", t.listen, err)
		}
		if t.announce != "" {
			if err := checkAddr(t.announce, true); err != nil {
				return fmt.Errorf("--tls-announce %q: %v", t.announce, err)
			}
		}
		if _, port, _ := net.SplitHostPort(t.listen); t.listen == listen && port != "0" {
			return fmt.Errorf("--tls-listen %q is --listen too: give TLS a port of its own", t.listen)
		}
	}
	_, err := t.read()
	return err
}

// tlsFiles is what the TLS flags' files hold, parsed: the client
// listener's config (nil without --tls-listen), the CAs the nodes'
// certificates are checked against (nil: the system's), the certificate
// presented to the nodes (nil: none), and a digest of every file's bytes,
// which tells a reload whether any changed.
type tlsFiles struct {
	server      *tls.Config
	backendCAs  *x509.CertPool
	backendCert *tls.Certificate
	digest      [sha256.Size]byte
}

// read reads and parses every file the flags name.
func (t tlsOptions) read() (*tlsFiles, error) {
	files := &tlsFiles{}
	d := fileDigest{h: sha256.New()}
	if t.listen != "" {
		pair, err := d.keyPair("tls-cert", t.cert, "tls-key", t.key)
		if err != nil {
			return nil, err
		}
		files.server = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}
		if t.clientCA != "" {
			if files.server.ClientCAs, err = d.certPool("tls-client-ca", t.clientCA); err != nil {
				return nil, err
			}
			files.server.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	if t.backend {
		var err error
		if t.backendCA != "" {
			// Left out of the digest: the nodes' CAs are those at start
			// (backendConfig), so a reload must not report them changed.
			if files.backendCAs, err = (fileDigest{}).certPool("backend-tls-ca", t.backendCA); err != nil {
				return nil, err
			}
		}
		if t.backendCert != "" {
			pair, err := d.keyPair("backend-tls-cert", t.backendCert, "backend-tls-key", t.backendKey)
			if err != nil {
				return nil, err
			}
			files.backendCert = &pair
		}
	}
	d.h.Sum(files.digest[:0])
	return files, nil
}

// liveTLS hands each new connection the TLS files in force, so that a
// reload (SIGHUP) renews certificates without a restart: a client's
// handshake and a node's dial look them up. Connections already made keep
// theirs.
type liveTLS struct {
	files atomic.Pointer[tlsFiles]
}

func newLiveTLS(files *tlsFiles) *liveTLS {
	l := &liveTLS{}
	l.files.Store(files)
	return l
}

// serverConfig is the client listener's config, nil without --tls-listen.
func (l *liveTLS) serverConfig() *tls.Config {
	if l.files.Load().server == nil {
		return nil
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return l.files.Load().server, nil
	}}
}

// backendConfig is the config of the connections to the nodes, nil without
// --backend-tls. The CAs and the server name are those at start: a change
// to them needs a restart.
func (l *liveTLS) backendConfig(t tlsOptions) *tls.Config {
	if !t.backend {
		return nil
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.backendServerName, RootCAs: l.files.Load().backendCAs,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if pair := l.files.Load().backendCert; pair != nil {
				return pair, nil
			}
			return &tls.Certificate{}, nil // none to present
		}}
}

// fileDigest reads the TLS files, hashing what it read into h (nil: not
// hashed).
type fileDigest struct{ h hash.Hash }

func (d fileDigest) read(flagName, file string) ([]byte, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--%s: %v", flagName, err)
	}
	if d.h != nil {
		fmt.Fprintf(d.h, "%s %d\n", flagName, len(b))
		d.h.Write(b)
	}
	return b, nil
}

// keyPair reads and parses a certificate and its key, naming the flag of
// whichever is wrong.
func (d fileDigest) keyPair(certFlag, certFile, keyFlag, keyFile string) (tls.Certificate, error) {
	certPEM, err := d.read(certFlag, certFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := d.read(keyFlag, keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("--%s %s and --%s %s: %v", certFlag, certFile, keyFlag, keyFile, err)
	}
	return pair, nil
}

// certPool reads a PEM file of CA certificates.
func (d fileDigest) certPool(flagName, file string) (*x509.CertPool, error) {
	pemBytes, err := d.read(flagName, file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("--%s %s: no PEM certificate in the file", flagName, file)
	}
	return pool, nil
}

// tlsAnnounceAddr is what CLUSTER replies name to TLS clients when both
// listeners serve: --tls-announce, else --announce's host (or the listener's,
// as announceAddr picks it) with the TLS listener's port.
func tlsAnnounceAddr(opts options, tlsAddr *net.TCPAddr, logger *slog.Logger) string {
	switch {
	case opts.tls.announce != "":
		return opts.tls.announce
	case opts.announce != "":
		host, _, _ := net.SplitHostPort(opts.announce)
		return net.JoinHostPort(host, strconv.Itoa(tlsAddr.Port))
	}
	return announceAddr(tlsAddr, logger)
}
