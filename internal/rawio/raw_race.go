//go:build unix && race

package rawio

import (
	"errors"
	"syscall"
)

// The ordinary calls carry the race detector's I/O annotations.

func read(fd uintptr, p []byte) (int, error) {
	n, err := syscall.Read(int(fd), p)
	return max(n, 0), errnoOf(err)
}

func write(fd uintptr, p []byte) (int, error) {
	n, err := syscall.Write(int(fd), p)
	return max(n, 0), errnoOf(err)
}

func errnoOf(err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return err
}
