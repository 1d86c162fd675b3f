// Package srchash records and checks the SHA-256 of the files the BPF objects of bpf/drops and bpf/sockiter
// are built from, in the format of sha256sum(1), so that a test can tell committed objects that are older
// than their sources.
package srchash

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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

// Verify reads a Sum result recorded in the file record (sources.sha256, its paths relative to the record's
// folder) and fails when it leaves out one of must, or when a file it names changed since it was written:
// then the committed BPF objects are older than their sources.
func Verify(record string, must ...string) error {
	recorded, err := os.ReadFile(record)
	if err != nil {
		return err
	}
	files, err := Files(string(recorded))
	if err != nil {
		return fmt.Errorf("%s: %w", record, err)
	}
	var errs []error
	for _, f := range must {
		if !slices.Contains(files, f) {
			errs = append(errs, fmt.Errorf("%s does not cover %s", record, f))
		}
	}
	dir := filepath.Dir(record)
	now, err := Sum(dir, files...)
	if err != nil {
		return err
	}
	if now != string(recorded) {
		was, is := strings.Split(string(recorded), "\n"), strings.Split(now, "\n")
		for i := range is {
			if i < len(was) && was[i] != is[i] {
				errs = append(errs, fmt.Errorf("%s changed since the BPF objects were generated", files[i]))
			}
		}
	}
	return errors.Join(errs...)
}
