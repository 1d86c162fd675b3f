package dropcheck

import "testing"

func TestTcpExtCompare(t *testing.T) {
	ext := map[string]uint64{"TCPRcvQDrop": 40, "TCPOFODrop": 60, "OfoPruned": 3}
	for _, c := range []struct {
		name          string
		protoMem      uint64
		skipped       uint64
		broken, short int
	}{
		{"equal", 100, 0, 0, 0},
		{"more than the kernel counted", 101, 0, 1, 0},
		{"5% short", 95, 0, 0, 1},
		{"6% short", 94, 0, 1, 0},
		{"short by skipped runs", 80, 15, 0, 1},
	} {
		got := map[string]uint64{"proto_mem": c.protoMem, "tcp_ofo_queue_prune": 3}
		broken, short := TcpExtCompare(got, ext, c.skipped)
		if len(broken) != c.broken || len(short) != c.short {
			t.Errorf("%s: broken %q, short %q; want %d and %d", c.name, broken, short, c.broken, c.short)
		}
	}
	// OfoPruned: at least one drop per call that dropped, both zero or neither.
	if b, _ := TcpExtCompare(map[string]uint64{"proto_mem": 100, "tcp_ofo_queue_prune": 2}, ext, 0); len(b) != 1 {
		t.Errorf("fewer ofo prune drops than OfoPruned calls: %q", b)
	}
}
