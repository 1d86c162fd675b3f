//go:build linux

package sockdiag

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/mdlayher/netlink"

	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

var record = flag.Bool("record", false, "record replies of this kernel into testdata/ (needs root and ss)")

// A recording is one dump request whose raw reply is kept in testdata/<name>.nlmsg (the datagrams
// back to back, as read), with `ss <args>` run at the same moment in testdata/<name>.ss when args is set.
type recording struct {
	name string
	req  Request
	ss   []string
}

var recordings = []recording{
	{name: "unspec_all_ext", req: Request{Family: FamilyUnspec, States: allStates, Extensions: ExtSKMemInfo | ExtInfo | ExtMemInfo},
		ss: []string{"-tanmieH"}},
	{name: "inet6_skmem", req: Request{Family: FamilyInet6, States: allStates, Extensions: ExtSKMemInfo},
		ss: []string{"-tanmeH", "-6"}},
	{name: "inet_default_info", req: Request{Family: FamilyInet, Extensions: ExtInfo},
		ss: []string{"-tanieH", "-4", "exclude", "time-wait", "exclude", "syn-recv"}},
	// AF_MAX and above: __sock_diag_cmd answers EINVAL.
	{name: "error_einval", req: Request{Family: 200}},
	// AF_X25 has no sock_diag handler and no module to load: ENOENT.
	{name: "error_enoent", req: Request{Family: 9}},
}

// TestRecord records replies of the running kernel, keeping a recording only when decoding it agrees with
// ss, so that the committed pairs are consistent. It builds the same namespace as TestDumpMatchesSS.
// Without -record it writes into a temporary directory, so that the recorder is tested on every run; with
// it (go test ./sockdiag/ -run TestRecord -record) it rewrites testdata/.
func TestRecord(t *testing.T) {
	dir := "testdata"
	if !*record {
		dir = t.TempDir()
	}
	testenv.RequireRoot(t)
	ss := testenv.RequireBinary(t, "ss", "iproute2")
	ns, nsfd := knownNetNS(t)
	for _, r := range recordings {
		var reply []byte
		var ssOut string
		for try := 0; ; try++ {
			reply = recordReply(t, nsfd, r.req)
			if r.ss == nil {
				break
			}
			ssOut = ns.MustRun(t, ss, r.ss...)
			diff, err := diffRecording(reply, ssOut)
			if err != nil {
				t.Fatalf("%s: %v", r.name, err)
			}
			if diff == "" {
				break
			}
			if try == 3 {
				t.Fatalf("%s: decoded reply differs from ss (-ss +decoded):\n%s", r.name, diff)
			}
		}
		write(t, dir, r.name+".nlmsg", reply)
		if r.ss != nil {
			write(t, dir, r.name+".ss", []byte(ssOut))
		}
	}
}

func write(t *testing.T, dir, name string, b []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s (%d bytes)", filepath.Join(dir, name), len(b))
}

// recordReply sends req in the namespace and returns every datagram of the reply, up to NLMSG_DONE or
// NLMSG_ERROR, concatenated.
func recordReply(t *testing.T, nsfd int, req Request) []byte {
	t.Helper()
	tr, err := dialRaw(nsfd)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer tr.Close()
	typ, payload := req.AppendPayload(nil)
	if _, err := tr.Send(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(typ), Flags: netlink.HeaderFlags(RequestFlags)},
		Data:   payload,
	}); err != nil {
		t.Fatalf("send: %v", err)
	}
	var all []byte
	buf := make([]byte, MinBufferSize)
	for {
		n, err := tr.Recv(buf)
		if err != nil {
			t.Fatalf("recv: %v", err)
		}
		all = append(all, buf[:n]...)
		var d Decoder
		res, err := d.Decode(buf[:n], func(*Socket) error { return nil })
		if res.Done || err != nil {
			return all
		}
	}
}
