// Command write records the SHA-256 of the BPF sources for go:generate: write -o FILE SOURCE...
package main

import (
	"flag"
	"log"
	"os"

	"github.com/sockbuf/sockbuf_exporter/bpf/internal/srchash"
)

func main() {
	out := flag.String("o", "", "file to write")
	flag.Parse()
	if *out == "" || flag.NArg() == 0 {
		log.Fatal("usage: write -o FILE SOURCE...")
	}
	sums, err := srchash.Sum(".", flag.Args()...)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(*out, []byte(sums), 0o644); err != nil {
		log.Fatal(err)
	}
}
