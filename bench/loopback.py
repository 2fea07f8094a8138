"""The benchmark scripts' receivers: a keep-alive HTTP/1.1 server on 127.0.0.1, on a free
port put on a queue, run in a child process until it is stopped."""
import asyncio
import signal


def serve_http(respond, port_queue):
    """Answers each request with `respond(head, body)`, the whole response as bytes."""
    # A parent's handler (the harness exits cleanly on SIGTERM) is not this child's: being
    # stopped is the normal end here.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)

    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    k, _, v = line.partition(b":")
                    if k.strip().lower() == b"content-length":
                        length = int(v)
                body = await reader.readexactly(length) if length else b""
                writer.write(respond(head, body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
        port_queue.put(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def header(head, name):
    """A request header's value, or b"" (`name` in lower case, as bytes)."""
    for line in head.split(b"\r\n"):
        k, _, v = line.partition(b":")
        if k.strip().lower() == name:
            return v.strip()
    return b""
