//go:build !linux

package drops

import "errors"

// Options configures Open.
type Options struct {
	NetNS     uint32
	MaxGroups int
}

// Tracer is only available on Linux.
type Tracer struct{}

// Open fails: eBPF tracing needs Linux.
func Open(Options) (*Tracer, error) { return nil, errors.ErrUnsupported }

// Read fails: eBPF tracing needs Linux.
func (*Tracer) Read() (Snapshot, error) { return Snapshot{}, errors.ErrUnsupported }

// Close does nothing.
func (*Tracer) Close() error { return nil }
