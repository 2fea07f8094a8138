"""The benchmark scripts' receivers: an asyncio server on 127.0.0.1 whose port is put on
a queue, run in a child process until it is stopped."""
import asyncio


def serve(handle, port_queue):
    """Serves connections with `handle(reader, writer)` on 127.0.0.1, on a free port."""

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
        port_queue.put(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    asyncio.run(main())
