//go:build linux

package drops

import "testing"

func TestSmoke(t *testing.T) {
	tr, err := Open(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	s, err := tr.Read()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("missing %v attributed %v: %+v", tr.Missing(), tr.Attributed(), s)
}
