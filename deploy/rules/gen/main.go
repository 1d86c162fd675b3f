// Command gen writes alerts.yml and recording.yml, rendered from rules.DefaultConfig, into a directory
// (default: the current one). `go generate ./deploy/rules` runs it there.
package main

import (
	"flag"
	"log"
	"os"
	"path/filepath"

	"github.com/sockbuf/sockbuf_exporter/deploy/rules"
)

func main() {
	out := flag.String("out", ".", "directory to write the rule files into")
	flag.Parse()
	files, err := rules.Files(rules.DefaultConfig())
	if err != nil {
		log.Fatal(err)
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(*out, name), b, 0o644); err != nil {
			log.Fatal(err)
		}
	}
}
