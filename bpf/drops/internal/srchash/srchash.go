// Package srchash records and checks the SHA-256 of the files the BPF objects are built from, in the format
// of sha256sum(1), so that a test can tell committed objects that are older than their sources.
package srchash

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Sum returns one "<sha256>  <path>" line per file, in the order given; paths are relative to dir.
func Sum(dir string, files ...string) (string, error) {
	var b strings.Builder
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return "", fmt.Errorf("hashing BPF source: %w", err)
		}
		sum := sha256.Sum256(data)
		fmt.Fprintf(&b, "%s  %s\n", hex.EncodeToString(sum[:]), f)
	}
	return b.String(), nil
}

// Files returns the paths named in a Sum result, in order.
func Files(sums string) ([]string, error) {
	var files []string
	for _, line := range strings.Split(strings.TrimRight(sums, "\n"), "\n") {
		_, f, ok := strings.Cut(line, "  ")
		if !ok || f == "" {
			return nil, fmt.Errorf("malformed line %q", line)
		}
		files = append(files, f)
	}
	return files, nil
}
