package heapwatch

import "testing"

var sink []byte

func TestSeesAnAllocation(t *testing.T) {
	stop := Start()
	base := stop()
	stop = Start()
	sink = make([]byte, 64<<20)
	for i := range sink {
		sink[i] = byte(i)
	}
	peak := stop()
	sink = nil
	if peak < base+32<<20 {
		t.Fatalf("peak %d after a 64 MiB allocation, baseline %d", peak, base)
	}
}
