package cluster_test

import (
	"context"
	"fmt"
	"log"

	"github.com/redis/go-redis/v9"

	"kvproxy/bench/cluster"
)

// A benchmark or command starts a cluster with New, points a client at its
// addresses and fails over the master of a key.
func ExampleNew() {
	ctx := context.Background()
	c, err := cluster.New(ctx, cluster.Options{Masters: 3, ReplicasPerMaster: 1})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	defer client.Close()
	if err := client.Set(ctx, "greeting", "hello", 0).Err(); err != nil {
		log.Fatal(err)
	}

	master := c.MasterForKey("greeting")
	if err := c.Failover(ctx, c.ReplicasOf(master.ID)[0]); err != nil {
		log.Fatal(err)
	}
	fmt.Println(c.MasterForKey("greeting") != master)
}
