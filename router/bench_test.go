package router

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"kvproxy/bench/cluster"
	"kvproxy/internal/resp"
)

// benchCallers is the number of concurrent callers, as redis-benchmark's
// default 50 clients (RunParallel starts parallelism × GOMAXPROCS).
const benchCallers = 50

// BenchmarkDo measures Do against a one-master Redis Cluster, with a
// baseline of the same load sent straight to redis-server over one
// connection per caller, in the same run. One op is one request; half SET,
// half GET.
func BenchmarkDo(b *testing.B) {
	skipIfShort(b)
	c := cluster.Start(b, cluster.Options{Masters: 1})
	addr := c.Addrs()[0]
	for _, pipeline := range []int{1, 16} {
		for _, conns := range []int{1, 4} {
			b.Run(fmt.Sprintf("router/conns=%d/pipeline=%d", conns, pipeline), func(b *testing.B) {
				benchRouter(b, addr, conns, pipeline)
			})
		}
		b.Run(fmt.Sprintf("direct/pipeline=%d", pipeline), func(b *testing.B) {
			runParallelBatches(b, pipeline, func() func(reqs []*Request) error {
				return directSender(b, addr)
			})
		})
	}
}

func benchRouter(b *testing.B, addr string, conns, pipeline int) {
	cfg := redisRouterConfig(addr)
	cfg.ConnsPerNode = conns
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := New(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	runParallelBatches(b, pipeline, func() func(reqs []*Request) error {
		return func(reqs []*Request) error {
			r.Do(context.Background(), reqs)
			for _, q := range reqs {
				if q.Reply[0] == '-' {
					return fmt.Errorf("error reply %q", q.Reply)
				}
			}
			return nil
		}
	})
}

// runParallelBatches runs benchCallers callers, each sending batches of
// pipeline requests through the sender its factory makes.
func runParallelBatches(b *testing.B, pipeline int, newSender func() func([]*Request) error) {
	var callerIDs atomic.Int32
	b.SetParallelism(max(1, benchCallers/runtime.GOMAXPROCS(0)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		send := newSender()
		id := callerIDs.Add(1)
		// Batches alternate between two request sets: at pipeline 1 a SET
		// then a GET of one key; deeper pipelines mix both in each batch.
		var batches [2][]*Request
		for half := range batches {
			for i := range pipeline {
				key := fmt.Sprintf("bench:%d:%d", id, i)
				if (i+half)%2 == 0 {
					batches[half] = append(batches[half], keyed(false, "SET", key, "xxx"))
				} else {
					batches[half] = append(batches[half], keyed(true, "GET", key))
				}
			}
		}
		for n := 0; ; n++ {
			// Each iteration is one request; a batch goes every pipeline
			// iterations.
			for range pipeline {
				if !pb.Next() {
					return
				}
			}
			if err := send(batches[n%2]); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// directSender writes each batch on a connection of its own and reads the
// replies with a Scanner, as a pipelining client of redis-server would.
func directSender(b *testing.B, addr string) func([]*Request) error {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = nc.Close() })
	scanner := resp.NewScanner(resp.DefaultMaxBulkLen)
	var out []byte
	in := make([]byte, 0, 64<<10)
	return func(reqs []*Request) error {
		out = out[:0]
		for _, q := range reqs {
			out = append(out, q.Raw...)
		}
		if _, err := nc.Write(out); err != nil {
			return err
		}
		in = in[:0]
		for done := 0; done < len(reqs); {
			n, err := nc.Read(in[len(in):cap(in)])
			if err != nil {
				return err
			}
			in = in[:len(in)+n]
			for {
				size, err := scanner.Scan(in)
				if err != nil {
					return err
				}
				if size == 0 {
					break
				}
				reqs[done].Reply = append(reqs[done].Reply[:0], in[:size]...)
				in = in[:copy(in, in[size:])]
				done++
			}
		}
		return nil
	}
}
