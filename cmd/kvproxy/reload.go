package main

import (
	"flag"
	"log/slog"
	"slices"
	"strings"

	"kvproxy/failover"
	"kvproxy/proxy"
	"kvproxy/router"
)

// liveSettings are the flags a reload (SIGHUP) applies to the running
// proxy; a change to any other needs a restart. The users: list is live too.
var liveSettings = map[string]bool{
	"log-level":           true,
	"max-clients":         true,
	"max-request-bytes":   true,
	"client-output-limit": true,
	"pubsub-output-limit": true,
	"password":            true,
	"admin-password":      true,
	"hold-timeout":        true,
	"hold-max-bytes":      true,
	// For TLS handshakes after the reload (liveTLS).
	"tls-cert":         true,
	"tls-key":          true,
	"tls-client-ca":    true,
	"backend-tls-cert": true,
	"backend-tls-key":  true,
}

// tlsFilesKey names, in the reload's log line, TLS files re-read with new
// contents under the same names: a renewed certificate.
const tlsFilesKey = "tls-files"

// reloader re-reads the settings (the --config file and the environment,
// under the same command line) and applies what changed to the running
// proxy.
type reloader struct {
	args []string
	env  func(string) string
	// opts and settings are what is in force.
	opts     options
	settings *flag.FlagSet
	level    *slog.LevelVar
	srv      *proxy.Server
	rt       *router.Router
	holds    *failover.Buffer
	tls      *liveTLS
	// proxyConfig is the proxy's Config for a set of options.
	proxyConfig func(options) proxy.Config
	log         *slog.Logger
}

// reload applies a reload, logging one line of what changed, one of what
// changed but needs a restart, or why nothing did.
func (r *reloader) reload() {
	next, settings, err := loadSettings(r.args, r.env)
	if err != nil {
		r.log.Error("reload refused: configuration unchanged", "err", oneLine(err))
		return
	}
	live, restart := r.changes(settings, next.users)
	// The files are read again whether or not their names changed.
	tlsFiles, err := r.liveTLSOptions(next).read()
	if err != nil {
		r.log.Error("reload refused: configuration unchanged", "err", oneLine(err))
		return
	}
	if tlsFiles.digest != r.tls.files.Load().digest {
		live = append(live, tlsFilesKey)
	}
	if len(live) == 0 && len(restart) == 0 {
		r.log.Info("reload: configuration unchanged")
		return
	}
	if len(live) > 0 {
		if err := r.apply(next, tlsFiles); err != nil {
			r.log.Error("reload refused: configuration unchanged", "err", oneLine(err))
			return
		}
		r.log.Info("reload: configuration changed", "changed", strings.Join(live, " "))
		// Last, so that the line above shows even when the new level
		// hides such lines from now on.
		r.level.Set(r.opts.logLevel)
	}
	if len(restart) > 0 {
		r.log.Warn("reload: settings changed that need a restart to apply; still running with their former values",
			"needs_restart", strings.Join(restart, " "))
	}
	// What needs a restart stays as it is in force, for the next
	// comparison and --print-config alike.
	for _, name := range restart {
		_ = settings.Set(name, r.settings.Lookup(name).Value.String())
	}
	r.settings = settings
}

// changes lists the settings of next that differ from those in force, as
// name=value (secrets masked), live ones apart from those needing a
// restart.
func (r *reloader) changes(next *flag.FlagSet, users []proxy.User) (live, restart []string) {
	next.VisitAll(func(f *flag.Flag) {
		value := f.Value.String()
		if value == r.settings.Lookup(f.Name).Value.String() || notInFile[f.Name] {
			return
		}
		shown := f.Name + "=" + value
		if isSecret(f.Name) {
			shown = f.Name + "=" + maskedSecret
		}
		if liveSettings[f.Name] {
			live = append(live, shown)
		} else {
			restart = append(restart, f.Name)
		}
	})
	if !slices.Equal(users, r.opts.users) {
		live = append(live, usersKey)
	}
	return live, restart
}

// liveTLSOptions are the TLS flags in force with next's live ones.
func (r *reloader) liveTLSOptions(next options) tlsOptions {
	t := r.opts.tls
	t.cert, t.key, t.clientCA = next.tls.cert, next.tls.key, next.tls.clientCA
	t.backendCert, t.backendKey = next.tls.backendCert, next.tls.backendKey
	return t
}

// apply takes on next's live settings, with tlsFiles read from their TLS
// flags; the proxy's come first, since only they can still be refused (the
// users).
func (r *reloader) apply(next options, tlsFiles *tlsFiles) error {
	applied := r.opts
	applied.tls = r.liveTLSOptions(next)
	applied.logLevel = next.logLevel
	applied.maxClients = next.maxClients
	applied.maxRequestBytes = next.maxRequestBytes
	applied.clientOutputLimit = next.clientOutputLimit
	applied.pubsubOutputLimit = next.pubsubOutputLimit
	applied.password, applied.adminPassword, applied.users = next.password, next.adminPassword, next.users
	applied.holdTimeout, applied.holdMaxBytes = next.holdTimeout, next.holdMaxBytes
	// The open file limit has its say on --max-clients, as at start.
	if err := fitDescriptors(&applied, len(r.rt.Topology().Nodes), r.log); err != nil {
		return err
	}
	applied.maxBlockingConns = r.opts.maxBlockingConns
	if err := r.srv.Reload(r.proxyConfig(applied)); err != nil {
		return err
	}
	// Both were validated with the options.
	_ = r.rt.SetHoldTimeout(applied.holdTimeout)
	_ = r.holds.SetMaxBytes(applied.holdMaxBytes)
	r.tls.files.Store(tlsFiles)
	r.opts = applied
	return nil
}

// oneLine is err's text on one line.
func oneLine(err error) string {
	return strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
}
