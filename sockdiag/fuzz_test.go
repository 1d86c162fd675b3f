package sockdiag

import (
	"errors"
	"path/filepath"
	"testing"
)

// FuzzDecode feeds arbitrary datagrams to the decoder, seeded with the replies recorded from the kernel:
// it must never panic, never read past its input, and report malformed input as an error.
func FuzzDecode(f *testing.F) {
	files, err := filepath.Glob("testdata/*.nlmsg")
	if err != nil || len(files) == 0 {
		f.Fatalf("no recorded replies in testdata/: %v", err)
	}
	for _, name := range files {
		f.Add(readFile(f, name))
	}
	f.Add(nlmsg(sockDiagByFamily, nlmFMulti, 0, 0, diagMsg(StateEstablished, src4, dst4, 1, 2,
		nlattr(inetDiagInfo, tcpInfo(104)), nlattr(inetDiagSKMemInfo, u32s(1, 2, 3)), nlattr(inetDiagMemInfo, u32s(1)))))
	f.Add(nlmsg(nlmsgDone, nlmFMulti|nlmFDumpIntr, 0, 0, negErrno(4)))

	f.Fuzz(func(t *testing.T, b []byte) {
		var d Decoder
		res, err := d.Decode(b, func(s *Socket) error {
			if s.TCPInfoLen > len(b) || s.SKMemInfoLen > len(b) {
				t.Fatalf("attribute lengths %d/%d exceed the %d-byte input", s.TCPInfoLen, s.SKMemInfoLen, len(b))
			}
			if s.Family != FamilyInet && s.Family != FamilyInet6 && (s.Src.Addr().IsValid() || s.Dst.Addr().IsValid()) {
				t.Fatalf("family %d decoded with addresses %v %v", s.Family, s.Src, s.Dst)
			}
			return nil
		})
		if max := len(b) / (nlmsgHdrLen + sizeofDiagMsg); res.Sockets > max {
			t.Fatalf("%d sockets from %d bytes", res.Sockets, len(b))
		}
		if res.Done && err != nil {
			t.Fatalf("done and failed: %v", err)
		}
		// The same bytes as a single message payload.
		var s Socket
		if err := DecodeSocket(b, &s); err != nil && !errors.Is(err, ErrTruncated) {
			t.Fatalf("DecodeSocket: unexpected error kind %v", err)
		}
	})
}
