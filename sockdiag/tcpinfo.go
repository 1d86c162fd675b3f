package sockdiag

import "encoding/binary"

// TCPInfo is struct tcp_info of include/uapi/linux/tcp.h, in the units the kernel uses (bytes, microseconds
// for rtt/rttvar/rcv_rtt/min_rtt/rto/ato, milliseconds for last_* and total_rto_time). The struct grows
// with kernel versions; Socket.TCPInfoLen says how many bytes arrived, and fields past them are zero. The
// TCPInfoLenXxx constants give the length from which a later field is present.
type TCPInfo struct {
	State                  uint8 // offset 0
	CAState                uint8
	Retransmits            uint8
	Probes                 uint8
	Backoff                uint8
	Options                uint8 // TCPI_OPT_* bits
	SndWscale              uint8 // low nibble of byte 6
	RcvWscale              uint8 // high nibble of byte 6
	DeliveryRateAppLimited bool  // bit 0 of byte 7

	RTO    uint32 // offset 8, µs
	ATO    uint32 // µs
	SndMSS uint32
	RcvMSS uint32

	Unacked uint32 // offset 24
	Sacked  uint32
	Lost    uint32
	Retrans uint32
	Fackets uint32

	LastDataSent uint32 // offset 44, ms
	LastAckSent  uint32
	LastDataRecv uint32
	LastAckRecv  uint32

	PMTU        uint32 // offset 60
	RcvSsthresh uint32 // offset 64
	RTT         uint32 // offset 68, µs
	RTTVar      uint32 // µs
	SndSsthresh uint32
	SndCwnd     uint32
	AdvMSS      uint32 // offset 84
	Reordering  uint32

	RcvRTT       uint32 // offset 92, µs
	RcvSpace     uint32 // offset 96
	TotalRetrans uint32 // offset 100

	PacingRate    uint64 // offset 104, bytes/s
	MaxPacingRate uint64
	BytesAcked    uint64
	BytesReceived uint64 // offset 128
	SegsOut       uint32 // offset 136
	SegsIn        uint32 // offset 140

	NotsentBytes uint32 // offset 144
	MinRTT       uint32 // µs
	DataSegsIn   uint32
	DataSegsOut  uint32

	DeliveryRate uint64 // offset 160, bytes/s

	BusyTime      uint64 // offset 168, µs
	RwndLimited   uint64 // µs limited by the receive window
	SndbufLimited uint64 // µs limited by the send buffer

	Delivered   uint32 // offset 192
	DeliveredCE uint32

	BytesSent    uint64 // offset 200
	BytesRetrans uint64
	DSackDups    uint32 // offset 216
	ReordSeen    uint32

	RcvOOOPack uint32 // offset 224

	SndWnd uint32 // offset 228, the peer's advertised window
	RcvWnd uint32 // offset 232, our advertised window

	Rehash uint32 // offset 236

	TotalRTO           uint16 // offset 240
	TotalRTORecoveries uint16
	TotalRTOTime       uint32 // offset 244, ms

	ReceivedCE uint32 // offset 248
}

// Lengths of struct tcp_info from which a field is present (its end offset), for Socket.TCPInfoLen.
const (
	TCPInfoLenTotalRetrans  = 104 // the original struct: up to tcpi_total_retrans
	TCPInfoLenBytesReceived = 136 // tcpi_bytes_received
	TCPInfoLenSegsIn        = 144 // tcpi_segs_in
	TCPInfoLenRcvOOOPack    = 228 // tcpi_rcv_ooopack
	TCPInfoLenRcvWnd        = 236 // tcpi_rcv_wnd (kernel 6.2)
	TCPInfoLenTotalRTO      = 248 // tcpi_total_rto_time (kernel 6.7)
	TCPInfoLenReceivedCE    = 252 // tcpi_received_ce
)

// sizeofTCPInfo is how much of struct tcp_info the decoder reads; the kernel may send more.
const sizeofTCPInfo = TCPInfoLenReceivedCE

// HasRcvWnd reports whether TCPInfo.RcvWnd came from the kernel.
func (s *Socket) HasRcvWnd() bool { return s.TCPInfoLen >= TCPInfoLenRcvWnd }

// decodeTCPInfo fills t from b of any length: a shorter b (an older kernel) is zero-filled through
// scratch, and bytes past the fields known here (a newer kernel) are ignored.
func decodeTCPInfo(t *TCPInfo, b []byte, scratch *[sizeofTCPInfo]byte) {
	if len(b) < sizeofTCPInfo {
		n := copy(scratch[:], b)
		clear(scratch[n:])
		b = scratch[:]
	}
	b = b[:sizeofTCPInfo]
	ne := binary.NativeEndian
	u32 := func(off int) uint32 { return ne.Uint32(b[off:]) }
	u64 := func(off int) uint64 { return ne.Uint64(b[off:]) }

	*t = TCPInfo{
		State:                  b[0],
		CAState:                b[1],
		Retransmits:            b[2],
		Probes:                 b[3],
		Backoff:                b[4],
		Options:                b[5],
		SndWscale:              b[6] & 0x0f,
		RcvWscale:              b[6] >> 4,
		DeliveryRateAppLimited: b[7]&1 != 0,

		RTO:    u32(8),
		ATO:    u32(12),
		SndMSS: u32(16),
		RcvMSS: u32(20),

		Unacked: u32(24),
		Sacked:  u32(28),
		Lost:    u32(32),
		Retrans: u32(36),
		Fackets: u32(40),

		LastDataSent: u32(44),
		LastAckSent:  u32(48),
		LastDataRecv: u32(52),
		LastAckRecv:  u32(56),

		PMTU:        u32(60),
		RcvSsthresh: u32(64),
		RTT:         u32(68),
		RTTVar:      u32(72),
		SndSsthresh: u32(76),
		SndCwnd:     u32(80),
		AdvMSS:      u32(84),
		Reordering:  u32(88),

		RcvRTT:       u32(92),
		RcvSpace:     u32(96),
		TotalRetrans: u32(100),

		PacingRate:    u64(104),
		MaxPacingRate: u64(112),
		BytesAcked:    u64(120),
		BytesReceived: u64(128),
		SegsOut:       u32(136),
		SegsIn:        u32(140),

		NotsentBytes: u32(144),
		MinRTT:       u32(148),
		DataSegsIn:   u32(152),
		DataSegsOut:  u32(156),

		DeliveryRate: u64(160),

		BusyTime:      u64(168),
		RwndLimited:   u64(176),
		SndbufLimited: u64(184),

		Delivered:   u32(192),
		DeliveredCE: u32(196),

		BytesSent:    u64(200),
		BytesRetrans: u64(208),
		DSackDups:    u32(216),
		ReordSeen:    u32(220),

		RcvOOOPack: u32(224),
		SndWnd:     u32(228),
		RcvWnd:     u32(232),
		Rehash:     u32(236),

		TotalRTO:           ne.Uint16(b[240:]),
		TotalRTORecoveries: ne.Uint16(b[242:]),
		TotalRTOTime:       u32(244),

		ReceivedCE: u32(248),
	}
}
