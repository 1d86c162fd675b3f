package sockdiag

import (
	"bufio"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// cmpAddr lets cmp.Diff compare netip values.
var cmpAddr = cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{})

// ssSocket is one socket as `ss -tanmieH` prints it: the independent reading the tests compare with.
type ssSocket struct {
	State        string
	RecvQ, SendQ uint64
	Local, Peer  netip.AddrPort
	// Fields holds the key:value tokens (ino, sk, advmss, rcv_space, rtt, wscale, ...) and the skmem
	// members under "skmem.r", "skmem.rb", ...
	Fields map[string]string
}

// parseSS parses the output of `ss -tanmieH`: one socket per line, with its -m/-i details on the
// following tab-indented line.
func parseSS(out string) ([]ssSocket, error) {
	var socks []ssSocket
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if len(socks) == 0 {
				return nil, fmt.Errorf("detail line before any socket: %q", line)
			}
			addFields(&socks[len(socks)-1], strings.Fields(line))
			continue
		}
		f := strings.Fields(line)
		if len(f) < 5 {
			return nil, fmt.Errorf("short ss line %q", line)
		}
		s := ssSocket{State: f[0], Fields: map[string]string{}}
		var err error
		if s.RecvQ, err = strconv.ParseUint(f[1], 10, 64); err != nil {
			return nil, fmt.Errorf("Recv-Q in %q: %w", line, err)
		}
		if s.SendQ, err = strconv.ParseUint(f[2], 10, 64); err != nil {
			return nil, fmt.Errorf("Send-Q in %q: %w", line, err)
		}
		if s.Local, err = parseSSAddr(f[3]); err != nil {
			return nil, err
		}
		if s.Peer, err = parseSSAddr(f[4]); err != nil {
			return nil, err
		}
		addFields(&s, f[5:])
		socks = append(socks, s)
	}
	return socks, sc.Err()
}

func addFields(s *ssSocket, tokens []string) {
	for _, tok := range tokens {
		if inner, ok := strings.CutPrefix(tok, "skmem:("); ok {
			for _, kv := range strings.Split(strings.TrimSuffix(inner, ")"), ",") {
				i := strings.IndexFunc(kv, func(r rune) bool { return r >= '0' && r <= '9' })
				if i > 0 {
					s.Fields["skmem."+kv[:i]] = kv[i:]
				}
			}
			continue
		}
		if k, v, ok := strings.Cut(tok, ":"); ok {
			s.Fields[k] = v
		}
	}
}

// parseSSAddr parses "127.0.0.1:80", "[::1]:80", "0.0.0.0:*", "127.0.0.1%lo:80".
func parseSSAddr(s string) (netip.AddrPort, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return netip.AddrPort{}, fmt.Errorf("no port in ss address %q", s)
	}
	host, port := s[:i], s[i+1:]
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if j := strings.IndexByte(host, '%'); j >= 0 {
		host = host[:j]
	}
	if host == "*" {
		host = "0.0.0.0"
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("ss address %q: %w", s, err)
	}
	var p uint64
	if port != "*" {
		if p, err = strconv.ParseUint(port, 10, 16); err != nil {
			return netip.AddrPort{}, fmt.Errorf("ss port %q: %w", s, err)
		}
	}
	return netip.AddrPortFrom(a, uint16(p)), nil
}

// ssView renders what ss prints for a decoded socket, in the same keys as ssSocket.Fields, so that a
// comparison covers every field both sides know. Keys ss leaves out when zero are left out here too.
func ssView(s *Socket) ssSocket {
	v := ssSocket{
		State: StateName(s.State),
		RecvQ: uint64(s.RQueue),
		SendQ: uint64(s.WQueue),
		Local: s.Src,
		Peer:  s.Dst,
		Fields: map[string]string{
			"sk":  strconv.FormatUint(s.Cookie, 16),
			"ino": strconv.FormatUint(uint64(s.Inode), 10),
		},
	}
	if s.HasSKMemInfo {
		m := s.SKMemInfo
		for k, x := range map[string]uint32{"r": m.RmemAlloc, "rb": m.Rcvbuf, "t": m.WmemAlloc, "tb": m.Sndbuf,
			"f": m.FwdAlloc, "w": m.WmemQueued, "o": m.Optmem, "bl": m.Backlog, "d": m.Drops} {
			v.Fields["skmem."+k] = strconv.FormatUint(uint64(x), 10)
		}
	}
	if s.TCPInfoLen > 0 && s.State != StateListen {
		ti := &s.TCPInfo
		nz := func(k string, x uint64) {
			if x != 0 {
				v.Fields[k] = strconv.FormatUint(x, 10)
			}
		}
		nz("rcv_space", uint64(ti.RcvSpace))
		nz("rcv_ssthresh", uint64(ti.RcvSsthresh))
		nz("advmss", uint64(ti.AdvMSS))
		nz("rcvmss", uint64(ti.RcvMSS))
		nz("mss", uint64(ti.SndMSS))
		nz("bytes_received", ti.BytesReceived)
		nz("bytes_acked", ti.BytesAcked)
		nz("segs_in", uint64(ti.SegsIn))
		nz("segs_out", uint64(ti.SegsOut))
		if ti.Options&0x4 != 0 { // TCPI_OPT_WSCALE, include/uapi/linux/tcp.h
			v.Fields["wscale"] = fmt.Sprintf("%d,%d", ti.SndWscale, ti.RcvWscale)
		}
		if ti.RTT != 0 {
			v.Fields["rtt"] = strconv.FormatFloat(float64(ti.RTT)/1000, 'g', 6, 64) + "/" +
				strconv.FormatFloat(float64(ti.RTTVar)/1000, 'g', 6, 64)
		}
		if ti.RcvRTT != 0 {
			v.Fields["rcv_rtt"] = strconv.FormatFloat(float64(ti.RcvRTT)/1000, 'g', 6, 64)
		}
		if s.TCPInfoLen >= TCPInfoLenRcvOOOPack {
			nz("snd_wnd", uint64(ti.SndWnd))
		}
	}
	return v
}

// ssCompared are the ss keys the tests compare; ss prints more (timers, rates) that move between runs.
var ssCompared = []string{"ino", "sk", "skmem.r", "skmem.rb", "skmem.t", "skmem.tb", "skmem.f", "skmem.w",
	"skmem.o", "skmem.bl", "skmem.d", "rcv_space", "rcv_ssthresh", "advmss", "rcvmss", "mss", "bytes_received",
	"bytes_acked", "segs_in", "segs_out", "wscale", "rtt", "rcv_rtt", "snd_wnd"}

// ssComparable keeps only the compared keys of an ss socket, for cmp.Diff.
func ssComparable(s ssSocket) ssSocket {
	f := map[string]string{}
	for _, k := range ssCompared {
		if v, ok := s.Fields[k]; ok {
			f[k] = v
		}
	}
	s.Fields = f
	return s
}

func sortSS(s []ssSocket) {
	sort.Slice(s, func(i, j int) bool {
		if c := s[i].Local.Compare(s[j].Local); c != 0 {
			return c < 0
		}
		return s[i].Peer.Compare(s[j].Peer) < 0
	})
}

// diffRecording decodes a recorded reply and compares it with the ss output recorded with it.
func diffRecording(reply []byte, ssOut string) (string, error) {
	var d Decoder
	var got []ssSocket
	res, err := d.Decode(reply, func(s *Socket) error {
		got = append(got, ssComparable(ssView(s)))
		return nil
	})
	if err != nil {
		return "", err
	}
	if !res.Done {
		return "", errors.New("recording does not end with NLMSG_DONE")
	}
	socks, err := parseSS(ssOut)
	if err != nil {
		return "", err
	}
	var want []ssSocket
	for _, s := range socks {
		want = append(want, ssComparable(s))
	}
	sortSS(want)
	sortSS(got)
	return cmp.Diff(want, got, cmpAddr), nil
}
