// Command gen writes the Kubernetes manifests that embed the rule files and dashboards (the PrometheusRule and
// the dashboards ConfigMap), rendered by package deploy from the files under -root. `go generate ./deploy`
// runs it after the rules' and dashboards' generators.
package main

import (
	"flag"
	"log"
	"os"
	"path/filepath"

	"github.com/sockbuf/sockbuf_exporter/deploy"
)

func main() {
	root := flag.String("root", "..", "repository root")
	flag.Parse()
	files, missing, err := deploy.Manifests(*root)
	if err != nil {
		log.Fatal(err)
	}
	if len(missing) > 0 {
		log.Printf("sources missing, placeholders written: %v", missing)
	}
	for path, b := range files {
		if err := os.WriteFile(filepath.Join(*root, path), b, 0o644); err != nil {
			log.Fatal(err)
		}
	}
}
