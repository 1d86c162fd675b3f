//go:build linux

package sockiter

import (
	"context"
	"errors"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

func TestOptionsRejected(t *testing.T) {
	for name, o := range map[string]Options{
		"too many bounds":      {FillBounds: make([]float64, MaxBounds+1)},
		"not ascending":        {FillBounds: []float64{0.5, 0.25}},
		"fill not ppm":         {FillBounds: []float64{1e-7}},
		"rcvbuf fractional":    {RcvbufBounds: []float64{1.5}},
		"negative bound":       {RcvbufBounds: []float64{-1}},
		"full ratio too large": {FullRatio: 3},
		"full ratio negative":  {FullRatio: -0.5},
		"max groups":           {MaxGroups: -1},
	} {
		e, err := Open(o)
		if err == nil {
			e.Close()
			t.Errorf("%s: Open(%+v) succeeded", name, o)
		} else if errors.Is(err, ErrUnavailable) {
			t.Errorf("%s: a bad option must not read as the iterator being unavailable: %v", name, err)
		}
	}
}

// TestCloseUnloads checks that nothing stays loaded after Close: the program and every map are gone.
func TestCloseUnloads(t *testing.T) {
	testenv.RequireRoot(t)
	e, err := Open(Options{Drops: true})
	if errors.Is(err, ErrUnavailable) {
		testenv.Missing(t, "%v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Walk(context.Background()); err != nil {
		t.Fatal(err)
	}
	info, err := e.objs.Walk.Info()
	if err != nil {
		t.Fatal(err)
	}
	progID, _ := info.ID()
	mapIDs, _ := info.MapIDs()
	if len(mapIDs) < 5 {
		t.Fatalf("program uses %d maps, want at least 5", len(mapIDs))
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Walk(context.Background()); err == nil {
		t.Error("Walk after Close succeeded")
	}
	// The kernel frees programs and maps after an RCU grace period: wait a little for them to go.
	deadline := time.Now().Add(5 * time.Second)
	for {
		var alive []string
		if p, err := ebpf.NewProgramFromID(progID); err == nil {
			p.Close()
			alive = append(alive, "program")
		}
		for _, id := range mapIDs {
			if m, err := ebpf.NewMapFromID(id); err == nil {
				name := "map"
				if mi, err := m.Info(); err == nil {
					name = "map " + mi.Name
				}
				m.Close()
				alive = append(alive, name)
			}
		}
		if len(alive) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still loaded 5s after Close: %v", alive)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestOpenWithoutPrivileges drops the capabilities of one thread and opens the engine there: the error
// must say what is missing and match ErrUnavailable and os.ErrPermission.
func TestOpenWithoutPrivileges(t *testing.T) {
	testenv.RequireRoot(t)
	errc, openErr := make(chan error, 1), make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine, its capabilities with it
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			errc <- err
			return
		}
		data[0].Effective, data[1].Effective = 0, 0
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			errc <- err
			return
		}
		e, err := Open(Options{})
		if err == nil {
			e.Close()
			errc <- errors.New("Open succeeded without capabilities")
			return
		}
		errc <- nil
		openErr <- err
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	err := <-openErr
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, os.ErrPermission) {
		t.Errorf("Open without capabilities: %v; want it to match ErrUnavailable and os.ErrPermission", err)
	}
	t.Logf("without capabilities: %v", err)
}
