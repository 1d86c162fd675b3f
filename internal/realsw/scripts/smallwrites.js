// Serves a JSON body of BODY_BYTES in CHUNK_BYTES writes, one write per turn of the event loop, so that each
// write leaves as its own small segment (a synchronous loop of res.write would be gathered into one writev).
// This is how a streaming JSON serializer writing straight to the response behaves.
'use strict';
const http = require('http');
const total = parseInt(process.env.BODY_BYTES, 10);
const chunk = parseInt(process.env.CHUNK_BYTES, 10);
const piece = '{"k":"' + 'x'.repeat(Math.max(chunk - 10, 1)) + '"},';
const srv = http.createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'application/json' });
  res.write('[');
  let sent = 1;
  const next = () => {
    if (res.destroyed) return;
    if (sent + piece.length >= total) { res.end('{}]'); return; }
    sent += piece.length;
    res.write(piece);
    setImmediate(next);
  };
  next();
});
srv.listen(parseInt(process.env.PORT, 10), process.env.HOST, () => console.log('listening'));
