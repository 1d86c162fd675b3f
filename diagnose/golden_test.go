package diagnose

import (
	"bytes"
	"encoding/json"
	"flag"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenEvidence are the reports whose JSON and text are kept in testdata/: the JSON contract's shape and the
// text a person reads.
func goldenEvidence() map[string]*Evidence {
	mixed := withBPF(pinnedClient(), ReceiveDrops{Role: "client", Port: "8080", Cgroup: clientPy.Cgroup, Reason: "proto_mem", RcvbufLocked: true, Count: 271})
	mixed.Groups = append(mixed.Groups, slowServer().Groups...)
	mixed.Softnet.Dropped = Val(1000)
	mixed.Netstat.ListenOverflows = Val(50)
	mixed.Listeners = []Listener{{Port: "8080", Samples: repeat5(ListenSample{129, 128})}}
	return map[string]*Evidence{
		"mixed":     mixed,
		"pinned":    pinnedClient(),
		"after_fix": afterFix(),
		"healthy":   healthyHeavy(),
	}
}

func TestGolden(t *testing.T) {
	for name, ev := range goldenEvidence() {
		t.Run(name, func(t *testing.T) {
			r := Diagnose(ev)
			var js bytes.Buffer
			if err := WriteJSON(&js, r); err != nil {
				t.Fatal(err)
			}
			var txt bytes.Buffer
			if err := WriteText(&txt, r); err != nil {
				t.Fatal(err)
			}
			golden(t, name+".json", js.Bytes())
			golden(t, name+".txt", txt.Bytes())
		})
	}
}

func golden(t *testing.T, file string, got []byte) {
	t.Helper()
	testenv.Golden(t, filepath.Join("testdata", file), got, *update, "go test ./diagnose -run TestGolden -update")
}

// TestJSONContract checks the contract's shape independently of the golden files: exactly the documented
// keys, findings a list even when empty, confidence one of three words.
func TestJSONContract(t *testing.T) {
	for name, ev := range goldenEvidence() {
		js, err := json.Marshal(Diagnose(ev))
		if err != nil {
			t.Fatal(err)
		}
		var top map[string]json.RawMessage
		if err := json.Unmarshal(js, &top); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"findings", "window_seconds"}, sortedKeys(top)); diff != "" {
			t.Errorf("%s: top-level keys (-want +got):\n%s", name, diff)
		}
		if string(top["findings"]) == "null" {
			t.Errorf("%s: findings is null", name)
		}
		var fs []map[string]json.RawMessage
		if err := json.Unmarshal(top["findings"], &fs); err != nil {
			t.Fatal(err)
		}
		for _, f := range fs {
			if diff := cmp.Diff([]string{"cause", "confidence", "evidence", "fix", "scope", "verify"}, sortedKeys(f)); diff != "" {
				t.Errorf("%s: finding keys (-want +got):\n%s", name, diff)
			}
			var sc map[string]string
			if err := json.Unmarshal(f["scope"], &sc); err != nil {
				t.Errorf("%s: scope: %v", name, err)
			}
			if diff := cmp.Diff([]string{"cgroup", "port", "process", "role"}, sortedKeys(sc)); diff != "" {
				t.Errorf("%s: scope keys (-want +got):\n%s", name, diff)
			}
			var c string
			if err := json.Unmarshal(f["confidence"], &c); err != nil || (c != "high" && c != "medium" && c != "low") {
				t.Errorf("%s: confidence %s", name, f["confidence"])
			}
		}
	}
	js, err := json.Marshal(Report{})
	if err != nil {
		t.Fatal(err)
	}
	if string(js) != `{"window_seconds":0,"findings":[]}` {
		t.Errorf("empty report: %s", js)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
