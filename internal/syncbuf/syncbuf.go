// Package syncbuf is a bytes.Buffer that several goroutines may write while another reads:
// the collector for a daemon's or a child process's log in tests and tools.
package syncbuf

import (
	"bytes"
	"sync"
)

// Buffer is safe for concurrent use. If Limit is positive, writes beyond Limit bytes are
// dropped (and reported as written), so a runaway log cannot fill memory.
type Buffer struct {
	Limit int
	mu    sync.Mutex
	b     bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.Limit > 0 && b.b.Len() >= b.Limit {
		return len(p), nil
	}
	return b.b.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
