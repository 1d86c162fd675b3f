//go:build !linux

package sockiter

import (
	"context"
	"errors"
)

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
