package metricshandler

import (
	"bytes"
	"net/http"
	"sync"

	dto "github.com/prometheus/client_model/go"
)

// fixedGatherer hands out families gathered already.
type fixedGatherer struct {
	fams []*dto.MetricFamily
	err  error
}

func (g fixedGatherer) Gather() ([]*dto.MetricFamily, error) { return g.fams, g.err }

// body is an answer kept whole: headers, status and bytes, so that it can be sent again.
type body struct {
	header http.Header
	status int
	buf    bytes.Buffer
}

func (b *body) Header() http.Header         { return b.header }
func (b *body) Write(p []byte) (int, error) { return b.buf.Write(p) }
func (b *body) WriteHeader(status int)      { b.status = status }

// writeTo sends the answer; it does not change b, so several requests may send it at once.
func (b *body) writeTo(w http.ResponseWriter) {
	h := w.Header()
	for k, v := range b.header {
		h[k] = v
	}
	w.WriteHeader(b.status)
	w.Write(b.buf.Bytes())
}

// bodyKey is what makes two answers the same: the same families, asked for in the same format.
type bodyKey struct {
	gen    uint64
	accept string
	gzip   bool
}

// maxBodies bounds the answers kept for one generation of families (one per Accept and encoding).
const maxBodies = 4

// bodyCache keeps the answers of the latest generation of shared families.
type bodyCache struct {
	mu     sync.Mutex
	gen    uint64
	bodies map[bodyKey]*body
}

func (c *bodyCache) get(k bodyKey) (*body, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.bodies[k]
	return b, ok
}

func (c *bodyCache) put(k bodyKey, b *body) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if k.gen != c.gen {
		if k.gen < c.gen {
			return // a slow request of an older generation
		}
		c.gen, c.bodies = k.gen, map[bodyKey]*body{}
	}
	if len(c.bodies) < maxBodies {
		c.bodies[k] = b
	}
}
