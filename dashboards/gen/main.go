// Command gen writes the Grafana dashboards' JSON, built by package dashboards, into a directory (default:
// the current one). `go generate ./dashboards` runs it there.
package main

import (
	"flag"
	"log"
	"os"
	"path/filepath"

	"github.com/sockbuf/sockbuf_exporter/dashboards"
)

func main() {
	out := flag.String("out", ".", "directory to write the dashboards into")
	flag.Parse()
	files, err := dashboards.Files()
	if err != nil {
		log.Fatal(err)
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(*out, name), b, 0o644); err != nil {
			log.Fatal(err)
		}
	}
}
