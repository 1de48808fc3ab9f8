#!/usr/bin/env python3
"""A TCP proxy that adds a fixed one-way delay, to imitate a WAN link on loopback.

    delayproxy.py LISTEN_PORT TARGET_HOST TARGET_PORT ONE_WAY_DELAY_MS

Listens on 127.0.0.1:LISTEN_PORT. Every chunk read from either side is written to the other
side DELAY ms after it was read, in order. The delays overlap (a chunk read at t goes out at
t+DELAY however many chunks are queued), so the link has latency but no bandwidth limit:
round trip = 2 * DELAY, as with `tc qdisc ... netem delay`, which this kernel lacks.
Dependency-free (asyncio only). Exits on SIGTERM or SIGINT.
"""

import asyncio
import signal
import socket
import sys

CHUNK = 64 * 1024
# Chunks read but not yet written, per direction. Bounded so that a peer that stops reading
# pushes back on the sender (TCP flow control) instead of filling our memory;
# 1024 chunks per delay is far more than loopback needs.
QUEUE_CHUNKS = 1024


def nodelay(writer):
    # No Nagle: a small SFTP request must leave at once, or we would add latency of our own.
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def pump(reader, writer, delay):
    """Copies one direction: a reader task stamps chunks, this loop releases them on time."""
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue(QUEUE_CHUNKS)

    async def read_side():
        while True:
            try:
                data = await reader.read(CHUNK)
            except OSError:
                data = None  # reset: tell the writer loop to give up at once
            await queue.put((loop.time() + delay, data))
            if not data:  # b"" is EOF: passed on (as a half-close) after the delay too
                return

    reading = asyncio.create_task(read_side())
    try:
        while True:
            due, data = await queue.get()
            if data is None:
                raise ConnectionResetError("the other side reset the connection")
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()
    finally:
        reading.cancel()


async def handle(client_r, client_w, target, delay):
    try:
        server_r, server_w = await asyncio.open_connection(*target)
    except OSError as e:
        print(f"delayproxy: cannot connect to {target}: {e}", file=sys.stderr)
        client_w.close()
        return
    nodelay(client_w)
    nodelay(server_w)
    pumps = [
        asyncio.create_task(pump(client_r, server_w, delay)),
        asyncio.create_task(pump(server_r, client_w, delay)),
    ]
    try:
        # Both directions end normally on EOF; if one fails (reset), drop the connection.
        done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_EXCEPTION)
        for t in done:
            if not t.cancelled() and t.exception() is not None:
                break
        else:
            await asyncio.gather(*pumps)
    except (OSError, asyncio.CancelledError):
        pass
    finally:
        for t in pumps:
            t.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
        for w in (client_w, server_w):
            w.close()


async def main(listen_port, target_host, target_port, delay_ms):
    delay = delay_ms / 1000.0
    target = (target_host, target_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    connections = set()

    async def on_connect(r, w):
        task = asyncio.current_task()
        connections.add(task)
        try:
            await handle(r, w, target, delay)
        finally:
            connections.discard(task)

    server = await asyncio.start_server(on_connect, "127.0.0.1", listen_port)
    await stop.wait()
    server.close()
    for task in list(connections):
        task.cancel()
    await asyncio.gather(*connections, return_exceptions=True)


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(
            "usage: delayproxy.py LISTEN_PORT TARGET_HOST TARGET_PORT ONE_WAY_DELAY_MS"
        )
    try:
        args = (int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    except ValueError:
        sys.exit("delayproxy.py: ports must be numbers and the delay a number of ms")
    asyncio.run(main(*args))
