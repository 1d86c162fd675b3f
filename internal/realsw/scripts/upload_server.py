# An upload endpoint on Python's standard library: ThreadingHTTPServer, one thread per connection, each
# reading its request body to the end as fast as it can (64 KiB reads) and answering 204.
import http.server
import os


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_PUT(self):
        left = int(self.headers.get("Content-Length", "0"))
        while left > 0:
            b = self.rfile.read1(min(left, 65536))
            if not b:
                break
            left -= len(b)
        self.send_response(204)
        self.end_headers()

    do_POST = do_PUT

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


srv = Server((os.environ["HOST"], int(os.environ["PORT"])), Handler)
print("listening", flush=True)
srv.serve_forever()
