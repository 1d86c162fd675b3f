package collector

import (
	"regexp"
	"strings"
	"testing"

	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

const metricsDocPath = "../docs/metrics.md"

// TestMetricsDoc keeps docs/metrics.md equal to what the metric specs say. It is generated, so that a metric
// added in any collector shows up there with nothing to write by hand:
//
//	go generate ./collector
func TestMetricsDoc(t *testing.T) {
	testenv.Golden(t, metricsDocPath, []byte(MetricsDoc()), false, "go generate ./collector")
}

// TestHelpIsOneSentence: a HELP string is one sentence that ends with a full stop; longer notes go to Notes,
// which only docs/metrics.md shows.
func TestHelpIsOneSentence(t *testing.T) {
	sentenceBreak := regexp.MustCompile(`[.!?;] +[A-Z]`)
	for _, m := range Metrics() {
		if !strings.HasSuffix(m.Help, ".") {
			t.Errorf("%s: HELP does not end with a full stop: %q", m.FullName(), m.Help)
		}
		if sentenceBreak.MatchString(m.Help) {
			t.Errorf("%s: HELP is more than one sentence (move the rest to Notes): %q", m.FullName(), m.Help)
		}
	}
}
