// Accepts uploads and never reads their bodies: req.pause() stops reading the socket, so what the clients send
// stays in the kernel's receive queue until the window closes. Nothing is ever answered.
'use strict';
const http = require('http');
const srv = http.createServer((req, res) => { req.pause(); });
srv.listen(parseInt(process.env.PORT, 10), process.env.HOST, () => console.log('listening'));
