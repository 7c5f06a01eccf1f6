package syncbuf

import (
	"strings"
	"sync"
	"testing"
)

func TestConcurrentWritesAndLimit(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				b.Write([]byte("x"))
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if got := b.String(); got != strings.Repeat("x", 800) {
		t.Fatalf("%d bytes", len(got))
	}
	l := Buffer{Limit: 4}
	l.Write([]byte("abcd"))
	if n, err := l.Write([]byte("ef")); n != 2 || err != nil || l.String() != "abcd" {
		t.Fatalf("over the limit: %d %v %q", n, err, l.String())
	}
}
