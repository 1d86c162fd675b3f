//go:build !linux

package collector

import (
	"fmt"
	"runtime"
)

// processScanner is Linux-only: elsewhere process attribution reports an error on every scrape.
type processScanner struct{}

func newProcessScanner(string) *processScanner { return &processScanner{} }

func (p *processScanner) scan() error {
	return fmt.Errorf("process attribution reads /proc/<pid>/fd, which %s does not have", runtime.GOOS)
}

func (p *processScanner) owner(uint32) int32 { return 0 }

func (p *processScanner) name(int32) string { return "" }
