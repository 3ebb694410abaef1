"""Time to a whole response on one keep-alive HTTP/1.1 connection to HOST:PORT,
N requests with GAP seconds between them: with GAP above 0.2 weir parks the
connection between requests, with GAP near 0 it never does. Prints the median,
p90 and max in microseconds (the first request is left out). Loopback only;
bounded by N."""
import socket
import statistics
import sys
import time

host, port, n, gap = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
assert host.startswith("127."), "loopback only"
assert 2 <= n <= 10000, "2 to 10,000 requests"
s = socket.create_connection((host, port), timeout=10)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
req = f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
times = []
for _ in range(n):
    t0 = time.perf_counter()
    s.sendall(req)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        assert chunk, "connection closed"
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    while len(body) < length:
        chunk = s.recv(65536)
        assert chunk, "connection closed"
        body += chunk
    times.append((time.perf_counter() - t0) * 1e6)
    time.sleep(gap)
times = sorted(times[1:])
print(
    f"median {statistics.median(times):.0f} us, "
    f"p90 {times[int(len(times) * 0.9)]:.0f} us, max {times[-1]:.0f} us"
)
