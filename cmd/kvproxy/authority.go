package main

import (
	"context"
	"errors"
	"log/slog"

	"kvproxy/controller"
	"kvproxy/router"
)

// controllerAuthority is a kvrocks-controller as the proxy's topology
// authority (proxy.FailoverAuthority): it records the failovers done
// through the proxy, and does them on released Kvrocks.
type controllerAuthority struct {
	client *controller.Client
	name   string
	log    *slog.Logger
}

func (a controllerAuthority) Name() string { return a.name }

// RecordHandover has the controller record that replica took over master's
// slots. A controller that already moved the shard on (a later failover it
// knows of) needs no report: that is logged, not retried.
func (a controllerAuthority) RecordHandover(ctx context.Context, master, replica router.NodeInfo) error {
	err := a.client.RecordFailover(ctx, master.Addr, replica.Addr)
	if errors.Is(err, controller.ErrMovedOn) {
		a.log.Warn("failover not recorded: the controller already moved the shard on", "controller", a.name, "err", err)
		return nil
	}
	return err
}

func (a controllerAuthority) Failover(ctx context.Context, replica router.NodeInfo) error {
	return a.client.Failover(ctx, replica.ID)
}
