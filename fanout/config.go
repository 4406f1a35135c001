package fanout

import "fmt"

// Config sizes the ring and bounds the work of one Pump. The zero value
// selects the defaults. NewRing copies it; later changes have no effect.
type Config struct {
	// Capacity is the number of updates the ring retains, a power of two.
	// A subscriber more than Capacity updates behind the producer is lapped
	// and resyncs from the store. Size it for a few seconds of the peak
	// commit rate. Zero means DefaultCapacity.
	Capacity int

	// MaxBatch is the maximum number of updates handed to one
	// Sink.Deliver call, and the number of ring entries one Pump walks. Zero
	// means DefaultMaxBatch, which lets a server write a header and a body
	// slice per update and stay within the 1024-slice limit of writev(2).
	MaxBatch int

	// ResyncBudget is the maximum number of updates one Pump reads from store
	// scans and from ring entries older than the group's walk, summed over
	// its subscribers, so that catching-up subscribers cannot stall an event
	// loop. Zero means DefaultResyncBudget.
	ResyncBudget int
}

// Defaults for the zero fields of Config.
const (
	DefaultCapacity     = 1 << 16
	DefaultMaxBatch     = 512
	DefaultResyncBudget = 4096

	maxCapacity = 1 << 30
)

// Validate reports whether every field of c is zero or in range. The error
// wraps ErrInvalidConfig and names the field.
func (c Config) Validate() error {
	if c.Capacity < 0 || c.Capacity > maxCapacity || c.Capacity&(c.Capacity-1) != 0 || c.Capacity == 1 {
		return fmt.Errorf("%w: Capacity %d is not a power of two between 2 and %d", ErrInvalidConfig, c.Capacity, maxCapacity)
	}
	if c.MaxBatch < 0 {
		return fmt.Errorf("%w: MaxBatch %d is negative", ErrInvalidConfig, c.MaxBatch)
	}
	if c.ResyncBudget < 0 {
		return fmt.Errorf("%w: ResyncBudget %d is negative", ErrInvalidConfig, c.ResyncBudget)
	}
	return nil
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if c.Capacity == 0 {
		c.Capacity = DefaultCapacity
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	if c.ResyncBudget == 0 {
		c.ResyncBudget = DefaultResyncBudget
	}
	return c
}
