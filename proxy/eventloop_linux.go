package proxy

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"kvproxy/router"
)

// eventLoop watches client sockets with an epoll instance of its own and
// serves the readable ones on one goroutine, so clients that wait for their
// replies (nearly all) cost no goroutine wake-up and no read that finds
// nothing. The loop waits for the epoll descriptor itself through Go's
// network poller rather than inside epoll_wait: a goroutine blocked in a
// system call makes the runtime hand its processor to another thread, which
// costs more than the loop saves.
type eventLoop struct {
	epfd int
	file *os.File
	raw  syscall.RawConn

	mu      sync.Mutex
	clients map[int32]*client
	done    chan struct{}
}

// eventLoopsSupported says whether newEventLoop can work here.
const eventLoopsSupported = true

func newEventLoop() (*eventLoop, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	if err := syscall.SetNonblock(epfd, true); err != nil {
		_ = syscall.Close(epfd)
		return nil, fmt.Errorf("epoll descriptor: %w", err)
	}
	file := os.NewFile(uintptr(epfd), "epoll")
	raw, err := file.SyscallConn()
	if err != nil {
		_ = file.Close()
		return nil, fmt.Errorf("epoll descriptor: %w", err)
	}
	l := &eventLoop{epfd: epfd, file: file, raw: raw, clients: make(map[int32]*client), done: make(chan struct{})}
	go l.run()
	return l, nil
}

// add starts watching c; c must not be served elsewhere meanwhile.
func (l *eventLoop) add(c *client) error {
	fd := -1
	if err := c.src.raw.Control(func(f uintptr) { fd = int(f) }); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.clients == nil {
		return errors.New("event loop closed")
	}
	l.clients[int32(fd)] = c
	// Edge-triggered: one notice per arrival. Notices for a client in
	// goroutine mode find its turn taken and are dropped: that goroutine
	// reads through Go's own poller.
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | epollET, Fd: int32(fd)}
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		delete(l.clients, int32(fd))
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	c.fd = fd
	return nil
}

// epollPoll is epoll_wait(2) with a zero timeout, made raw: it never blocks
// (see package rawio for why that matters).
func epollPoll(epfd uintptr, events []syscall.EpollEvent) (int, error) {
	n, _, errno := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, epfd, uintptr(unsafe.Pointer(unsafe.SliceData(events))), uintptr(len(events)), 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// roundFlushBytes is how much a round queues for the backends before it
// writes them, without waiting for the round's end. Sent whole, a round
// of many pipelining clients reaches the server as one batch and travels
// client -> proxy -> server -> proxy -> client as a unit, each process
// idle while another works: under redis-benchmark -P 16 -c 50 a quarter
// of the two cores stayed idle. Sent in pieces of this size the server
// starts on the first while the loop reads the rest: 3% more throughput
// in an A/B of 6 interleaved rounds, within the noise of kvbench's 3-round
// runs; 4 KB pieces cost more in writes than they gained. Pipeline-1
// rounds stay well below it.
const roundFlushBytes = 16 << 10

// epollET is EPOLLET as the unsigned event mask wants it.
const epollET = 1 << 31

// remove stops watching c; it runs before c's socket is closed, so the
// descriptor number cannot have been reused yet.
func (l *eventLoop) remove(c *client) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.clients[int32(c.fd)] == c {
		delete(l.clients, int32(c.fd))
		_ = syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, c.fd, nil)
	}
}

// close stops the loop; the clients must have ended.
func (l *eventLoop) close() {
	l.mu.Lock()
	l.clients = nil
	l.mu.Unlock()
	_ = l.file.Close() // wakes run
	<-l.done
}

func (l *eventLoop) run() {
	defer close(l.done)
	var events [256]syscall.EpollEvent
	var writes router.Writes
	// One Read for the loop's life: the poller's readiness flag is reset
	// only when Read begins, so after a round the loop parks at once unless
	// something arrived during it, instead of polling again first to find
	// nothing (one system call per round saved). A full batch of events is
	// polled again right away: the rest raise no new edge.
	_ = l.raw.Read(func(fd uintptr) bool {
		for {
			n, err := epollPoll(fd, events[:])
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if err != nil {
				return true // closed
			}
			for _, ev := range events[:n] {
				l.mu.Lock()
				c := l.clients[ev.Fd]
				l.mu.Unlock()
				if c != nil {
					c.onReadable(&writes, ev.Events&(syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0)
					if writes.Queued() >= roundFlushBytes {
						writes.Flush()
					}
				}
			}
			// One write per backend connection for the rest of the round.
			writes.Flush()
			if n < len(events) {
				return false // park until the next arrival
			}
		}
	})
}
