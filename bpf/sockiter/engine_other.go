//go:build !linux

package sockiter

import (
	"context"
	"errors"
)

// Options configure an Engine; see the Linux build.
type Options struct {
	States       uint32
	FullRatio    float64
	FillBounds   []float64
	RcvbufBounds []float64
	Cgroups      bool
	Drops        bool
	MaxGroups    int
	IterateOnly  bool
}

// ErrUnavailable is wrapped by Open's errors when the iterator cannot run.
var ErrUnavailable = errors.New("BPF socket iterator unavailable")

// Engine is unavailable outside Linux.
type Engine struct{}

// Open fails outside Linux.
func Open(Options) (*Engine, error) {
	return nil, errors.Join(ErrUnavailable, errors.ErrUnsupported)
}

// Walk fails outside Linux.
func (*Engine) Walk(context.Context) (*Result, error) { return nil, errors.ErrUnsupported }

// WalkNetNS fails outside Linux.
func (*Engine) WalkNetNS(context.Context, int) (*Result, error) { return nil, errors.ErrUnsupported }

// Close does nothing outside Linux.
func (*Engine) Close() error { return nil }
