"""Opens N keep-alive HTTP/1.1 connections to HOST:PORT, sends one request on
each, reads the response, then holds them idle until killed. Touches READY_FILE
once every connection has its response. Loopback only; bounded by N."""
import asyncio
import sys

host, port, n, ready = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
assert host.startswith("127."), "loopback only"
REQ = f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


async def one(sem, conns):
    async with sem:
        r, w = await asyncio.open_connection(host, port)
        w.write(REQ)
        await w.drain()
        head = await r.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await r.readexactly(length)
        conns.append((r, w))


async def main():
    conns = []
    sem = asyncio.Semaphore(500)
    await asyncio.wait_for(asyncio.gather(*(one(sem, conns) for _ in range(n))), 120)
    open(ready, "w").write(str(len(conns)))
    await asyncio.sleep(120)


asyncio.run(main())
