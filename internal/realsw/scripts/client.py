"""GET a URL repeatedly with requests, until a count or a deadline.

argv: url requests deadline_seconds rcvbuf pause_seconds pause_every_bytes
rcvbuf > 0 pins SO_RCVBUF through an HTTPAdapter that hands socket_options to urllib3's pool manager: this is
the way that works (setting session.socket_options, or requests.packages.urllib3 defaults after the pool
exists, does nothing). pause_seconds > 0 streams the body and sleeps that long after every
pause_every_bytes read: a reader that falls behind in bursts.
"""
import socket
import sys
import time

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection


class RcvbufAdapter(HTTPAdapter):
    def __init__(self, rcvbuf, **kwargs):
        self.rcvbuf = rcvbuf
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs):
        kwargs["socket_options"] = HTTPConnection.default_socket_options + [
            (socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)]
        super().init_poolmanager(*args, **kwargs)


def main():
    url, count, seconds, rcvbuf, pause, every = (sys.argv[1], int(sys.argv[2]), float(sys.argv[3]),
                                                 int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]))
    deadline = time.monotonic() + seconds
    s = requests.Session()
    if rcvbuf > 0:
        s.mount("http://", RcvbufAdapter(rcvbuf))
    done = got = 0
    while done < count and time.monotonic() < deadline:
        r = s.get(url, stream=True, timeout=30)
        r.raise_for_status()
        since = 0
        for c in r.iter_content(65536):
            got += len(c)
            since += len(c)
            if pause > 0 and since >= every:
                if time.monotonic() > deadline:
                    break
                time.sleep(pause)
                since = 0
        r.close()
        done += 1
    print("requests", done, "bytes", got)


main()
