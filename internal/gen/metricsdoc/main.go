// Command metricsdoc writes docs/metrics.md from the collectors' metric specs (collector.MetricsDoc).
// `go generate ./collector` runs it; collector's TestMetricsDoc fails when the committed file is stale.
package main

import (
	"flag"
	"log"
	"os"

	"github.com/sockbuf/sockbuf_exporter/collector"
)

func main() {
	out := flag.String("o", "docs/metrics.md", "file to write")
	flag.Parse()
	if err := os.WriteFile(*out, []byte(collector.MetricsDoc()), 0o644); err != nil {
		log.Fatal(err)
	}
}
