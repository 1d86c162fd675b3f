# The receiver of TestMemoryLimitHits (bpf/drops) and of the bpf collector's memory limit test: listens on a
# loopback port it prints, accepts argv[1] connections, then reads at most argv[2] bytes from each every
# argv[3] seconds until its standard input closes, or argv[4] seconds have passed. Its sockets are charged to
# the memory cgroup it runs in: a listener's accepted sockets go to the memory cgroup of the task that calls
# accept() (Linux 6.3+), its own.
import select, socket, sys, time
n, chunk, pause, limit = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
end = time.monotonic() + limit
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(n)
ls.settimeout(limit)
print(ls.getsockname()[1], flush=True)
conns = [ls.accept()[0] for _ in range(n)]
for c in conns:
    c.setblocking(False)
while time.monotonic() < end and not select.select([sys.stdin], [], [], 0)[0]:
    for c in conns:
        try:
            c.recv(chunk)
        except (BlockingIOError, ConnectionError):
            pass
    time.sleep(pause)
