package hardening

import (
	"bufio"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"
)

// pipelineTally counts the replies of many pipelining clients.
type pipelineTally struct {
	mu sync.Mutex
	// errors counts error replies by text; wrong counts GET replies that
	// were not the value written.
	errors       map[string]int
	errorReplies int
	wrong        int
	firstWrong   string
	// failures are connections that broke or timed out, one line each.
	failures []string
}

func (p *pipelineTally) add(errorReplies map[string]int, wrong int, firstWrong string, failure error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for text, n := range errorReplies {
		p.errors[text] += n
		p.errorReplies += n
	}
	if p.wrong == 0 {
		p.firstWrong = firstWrong
	}
	p.wrong += wrong
	if failure != nil {
		p.failures = append(p.failures, failure.Error())
	}
}

// pipelineKey and pipelineValue name client c's i-th key and its value.
func pipelineKey(c, i int) string   { return "pipe:" + strconv.Itoa(c) + ":" + strconv.Itoa(i) }
func pipelineValue(c, i int) string { return "v" + strconv.Itoa(c) + "-" + strconv.Itoa(i) }

// pipelineRound has every client send its whole pipeline of perClient
// commands (SET, or GET checking the value) in one write and then read
// every reply.
func pipelineRound(conns []*respConn, perClient int, command string, tally *pipelineTally) {
	var wg sync.WaitGroup
	for c, conn := range conns {
		wg.Go(func() {
			var buf []byte
			for i := range perClient {
				if command == "SET" {
					buf = appendCommand(buf, "SET", pipelineKey(c, i), pipelineValue(c, i))
				} else {
					buf = appendCommand(buf, "GET", pipelineKey(c, i))
				}
			}
			errs := map[string]int{}
			wrong, firstWrong := 0, ""
			failure := func() error {
				if err := conn.nc.SetDeadline(time.Now().Add(3 * time.Minute)); err != nil {
					return err
				}
				if _, err := conn.nc.Write(buf); err != nil {
					return fmt.Errorf("client %d: write: %w", c, err)
				}
				for i := range perClient {
					rep, err := readReply(conn.r)
					switch {
					case err != nil:
						return fmt.Errorf("client %d: reply %d of %d: %w", c, i+1, perClient, err)
					case rep.isError():
						errs[rep.text]++
					case command == "SET" && (rep.kind != '+' || rep.text != "OK"):
						return fmt.Errorf("client %d: SET reply %v", c, rep)
					case command == "GET" && rep.text != pipelineValue(c, i):
						if wrong == 0 {
							firstWrong = fmt.Sprintf("GET %s: %v, want %s", pipelineKey(c, i), rep, pipelineValue(c, i))
						}
						wrong++
					}
				}
				return nil
			}()
			tally.add(errs, wrong, firstWrong, failure)
		})
	}
	wg.Wait()
}

func (p *pipelineTally) report(t *testing.T, what string, total int) {
	t.Helper()
	if len(p.failures) > 0 {
		t.Errorf("%s: %d connections failed, first: %s", what, len(p.failures), p.failures[0])
	}
	if p.errorReplies > 0 {
		t.Errorf("%s: %d of %d requests got an error reply, want none (no request is refused for load): %v",
			what, p.errorReplies, total, p.errors)
	}
	if p.wrong > 0 {
		t.Errorf("%s: %d of %d keys did not read back, first: %s", what, p.wrong, total, p.firstWrong)
	}
}

// TestMillionPipelinedCommandsFromThousandClients: 1,000 clients each send
// 1,000 SETs in one write through a proxy with one connection per node, so
// its per-connection caps are reached: no request is refused (the proxy
// makes the clients wait instead), every key reads back, and INFO
// rejected_requests does not move.
func TestMillionPipelinedCommandsFromThousandClients(t *testing.T) {
	e := sharedEnv(t)
	const clients, perClient = 1000, 1000
	raiseFileLimit(t, 2*clients+500)
	proxy := e.launchProxy(t, "--backend-conns", "1")
	rejectedBefore, ok := statValue(t, proxyInfo(t, proxy.Addr()), "rejected_requests")
	if !ok {
		t.Fatal("INFO stats has no rejected_requests")
	}
	conns := make([]*respConn, clients)
	for i := range conns {
		conns[i] = mustDial(t, proxy.Addr())
		conns[i].r = bufio.NewReaderSize(conns[i].nc, 16<<10)
	}

	start := time.Now()
	sets := &pipelineTally{errors: map[string]int{}}
	pipelineRound(conns, perClient, "SET", sets)
	t.Logf("%d clients x %d pipelined SETs in %v", clients, perClient, time.Since(start).Round(time.Millisecond))
	sets.report(t, "SET", clients*perClient)

	start = time.Now()
	gets := &pipelineTally{errors: map[string]int{}}
	pipelineRound(conns, perClient, "GET", gets)
	t.Logf("%d clients x %d pipelined GETs in %v", clients, perClient, time.Since(start).Round(time.Millisecond))
	gets.report(t, "GET (reading every key back)", clients*perClient)

	info := proxyInfo(t, proxy.Addr())
	rejectedAfter, _ := statValue(t, info, "rejected_requests")
	if rejectedAfter != rejectedBefore {
		t.Errorf("INFO rejected_requests went from %d to %d, want no request refused", rejectedBefore, rejectedAfter)
	}
	if parked, ok := statValue(t, info, "backend_parked_requests"); ok {
		t.Logf("INFO backend_parked_requests:%d", parked)
	} else {
		t.Errorf("INFO stats has no backend_parked_requests field")
	}
}
