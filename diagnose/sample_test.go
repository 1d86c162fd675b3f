package diagnose

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestGroupSampleAdd(t *testing.T) {
	o := &SampleOptions{TCPInfo: true, Sysctl: base().Sysctl}
	var s GroupSample
	for _, r := range []SocketReading{
		{RecvQ: 60000, RmemAlloc: 125000, Rcvbuf: rmemDefault, ZeroWindow: true}, // full: 125000 >= 0.9 × 131072
		{RecvQ: 0, RmemAlloc: 0, Rcvbuf: 2 * coreRmemMax},
		{RecvQ: 10, RmemAlloc: 4096, Rcvbuf: rmemMax2},
		{RecvQ: 0, RmemAlloc: 100, Rcvbuf: 0}, // no buffers (not counted full)
	} {
		s.Add(r, o)
	}
	want := GroupSample{
		Sockets: 4, Full: 1, RecvQ: 60010, RmemAlloc: 129196, Rcvbuf: rmemDefault + 2*coreRmemMax + rmemMax2,
		RcvbufMin: 0, RcvbufMax: rmemMax2,
		ZeroWindow: Val(1), AtTCPRmemMax: Val(1), AtRmemMaxCap: Val(1), // Locked unknown: the lock bit was not read
	}
	if diff := cmp.Diff(want, s); diff != "" {
		t.Errorf("sample (-want +got):\n%s", diff)
	}

	// Without the sysctls, tcp_info or the lock bit, those counts stay unknown; a custom ratio applies.
	var u GroupSample
	u.Add(SocketReading{RmemAlloc: 60000, Rcvbuf: 100000, Locked: true}, &SampleOptions{FullRatio: 0.5})
	if u.Full != 1 || u.ZeroWindow.Known || u.Locked.Known || u.AtTCPRmemMax.Known || u.AtRmemMaxCap.Known {
		t.Errorf("unknown readings: %+v", u)
	}
}
