package attrib

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// TestCgroupLabelChurn simulates a day of container restarts and pod rollouts on a Kubernetes node and counts
// the distinct cgroup label values, and the socket series they make, under each policy. The labels come from
// CgroupName applied to the cgroup paths the kubelet creates (systemd and cgroupfs drivers), so the figures
// are the policy's, not the simulation's. The figures go into docs/cardinality.md.
//
// The node: 30 pods; half of them have a sidecar. Per container and day: 80% never restart, 15% restart a
// few times (Poisson, mean 2), 5% crash-loop (kubelet's CrashLoopBackOff caps the back-off at 5 minutes:
// about one restart every 5 minutes, all day). 30% of the pods are replaced once by a rollout (a new pod UID,
// new containers) at a random time. Each container has seriesPerContainer socket series at any moment
// (4 groups: one server port and three client ports, times 8 gauges and counters).
func TestCgroupLabelChurn(t *testing.T) {
	const (
		pods               = 30
		seriesPerContainer = 4 * 8
		day                = 24 * time.Hour
		crashLoopEvery     = 5 * time.Minute
	)
	for _, driver := range []string{"systemd", "cgroupfs"} {
		rng := rand.New(rand.NewPCG(1, 2)) // the same day for both drivers and every run
		ids := 0
		newID := func() string { ids++; return fmt.Sprintf("%064x", ids) }
		podUID := func() string { ids++; return fmt.Sprintf("%08x-0000-4000-8000-%012x", ids, ids) }
		path := func(uid, container string) string {
			if driver == "systemd" {
				slice := "kubepods-burstable-pod" + underscore(uid) + ".slice"
				return "/kubepods.slice/kubepods-burstable.slice/" + slice + "/cri-containerd-" + container + ".scope"
			}
			return "/kubepods/burstable/pod" + uid + "/" + container
		}
		// Two tallies: every container, and without the crash-looping ones (which may die before a scrape
		// sees them, and are the reason to look at a node anyway).
		type tally struct {
			labels              map[CgroupPolicy]map[string]bool
			instances, uids     int
			leafSeries, stabSer int
		}
		all := tally{labels: map[CgroupPolicy]map[string]bool{CgroupLeaf: {}, CgroupStable: {}}}
		calm := tally{labels: map[CgroupPolicy]map[string]bool{CgroupLeaf: {}, CgroupStable: {}}}
		live := 0
		for range pods {
			n := 1 + rng.IntN(2) // a sidecar for half of them
			live += n
			restarts := make([]int, n)
			looping := false
			for c := range restarts {
				switch r := rng.Float64(); {
				case r < 0.05:
					restarts[c] = int(day / crashLoopEvery)
					looping = true
				case r < 0.20:
					restarts[c] = poisson(rng, 2)
				}
			}
			generations := 1
			if rng.Float64() < 0.3 {
				generations = 2 // a rollout: a new pod, whose containers start over
			}
			tallies := []*tally{&all}
			if !looping {
				tallies = append(tallies, &calm)
			}
			for range generations {
				uid := podUID()
				for _, ty := range tallies {
					ty.uids++
					ty.stabSer += n * seriesPerContainer // the pod's label carries its containers' groups
				}
				for c := range n {
					// A rollout splits the day: each generation has its share of the restarts.
					for range 1 + restarts[c]/generations {
						p := path(uid, newID())
						for _, ty := range tallies {
							ty.labels[CgroupLeaf][CgroupName(p, CgroupLeaf)] = true
							ty.labels[CgroupStable][CgroupName(p, CgroupStable)] = true
							ty.instances++
							ty.leafSeries += seriesPerContainer
						}
					}
				}
			}
		}
		for _, tc := range []struct {
			name string
			t    tally
		}{{"all containers", all}, {"without crash-looping pods", calm}} {
			leaf, stable := len(tc.t.labels[CgroupLeaf]), len(tc.t.labels[CgroupStable])
			if leaf != tc.t.instances || stable != tc.t.uids {
				t.Errorf("%s, %s: %d leaf labels for %d container instances, %d stable labels for %d pod UIDs",
					driver, tc.name, leaf, tc.t.instances, stable, tc.t.uids)
			}
			t.Logf("%s driver, %s: cgroup label values over the day leaf %d, stable %d; socket series over the day leaf %d, stable %d (%.1fx)",
				driver, tc.name, leaf, stable, tc.t.leafSeries, tc.t.stabSer, float64(tc.t.leafSeries)/float64(tc.t.stabSer))
		}
		t.Logf("%s driver: %d pods, %d containers, %d socket series at any moment under either policy", driver, pods, live, live*seriesPerContainer)
	}
}

func underscore(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c == '-' {
			b[i] = '_'
		}
	}
	return string(b)
}

// poisson draws from a Poisson distribution of mean m (Knuth's method, fine for small m).
func poisson(rng *rand.Rand, m float64) int {
	l, k, p := math.Exp(-m), 0, 1.0
	for {
		p *= rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}
