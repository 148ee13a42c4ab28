"""A git:// server (protocol v0) that advertises as many refs as it is told to, on loopback.

It answers every request with the advertisement and a flush, without serving
any pack: enough for ``git ls-remote``. Used by the provider tests and by
``benchmarks/ls_remote_refs.py``; ``python -m tests.fake_git N`` serves N refs
named ``refs/heads/b<i>/main`` and prints its port.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field

SHA = "1" * 40


def pkt(line: str) -> bytes:
    data = line.encode()
    return f"{len(data) + 4:04x}".encode() + data


@dataclass
class FakeGit:
    url: str
    served: list[int] = field(default_factory=list)


async def serve_refs(names: list[str] | int) -> tuple[asyncio.Server, FakeGit]:
    """Serve ``names``, or that many ``refs/heads/b<i>/main`` refs, all at one commit."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            size = int(await reader.readexactly(4), 16)
            await reader.readexactly(size - 4)
            writer.write(pkt(f"{SHA} HEAD\0multi_ack side-band-64k ofs-delta\n"))
            count = names if isinstance(names, int) else len(names)
            for i in range(count):
                name = f"refs/heads/b{i}/main" if isinstance(names, int) else names[i]
                writer.write(pkt(f"{SHA} {name}\n"))
                if i % 1000 == 0:
                    await writer.drain()
            writer.write(b"0000")
            await writer.drain()
            fake.served.append(count)
            await reader.read()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    fake = FakeGit(url=f"git://127.0.0.1:{port}/repo.git")
    return server, fake


async def _main(count: int) -> None:
    server, fake = await serve_refs(count)
    print(fake.url, flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(_main(int(sys.argv[1])))
