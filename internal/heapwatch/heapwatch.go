// Package heapwatch measures the peak Go heap in use while a piece of code runs, for tests that
// check a transfer streams instead of buffering (the 256 MiB round trips). It samples
// runtime.MemStats.HeapInuse every few milliseconds: a short spike between samples can be
// missed, which is why the limits it is checked against leave a wide margin.
package heapwatch

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Start collects garbage, then samples the heap until the returned function is called; that
// function returns the peak HeapInuse in bytes.
func Start() (stop func() uint64) {
	runtime.GC()
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var ms runtime.MemStats
		tick := time.NewTicker(3 * time.Millisecond)
		defer tick.Stop()
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	})
	return func() uint64 { close(done); wg.Wait(); return peak.Load() }
}
