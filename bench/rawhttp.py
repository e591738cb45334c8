"""A lean HTTP/1.1 client for the load generator's POSTs: the request bytes are built once, the
reply is read by Content-Length, and a connection is reused while the server keeps it open
(gunicorn's sync workers close it after each response). It costs a fraction of aiohttp's CPU per
request, which matters when client and server share 2 cores."""

from __future__ import annotations

import asyncio
from urllib.parse import urlparse


def build_post(url: str, body: bytes, headers: dict[str, str]) -> bytes:
    u = urlparse(url)
    lines = [f"POST {u.path or '/'} HTTP/1.1", f"Host: {u.hostname}:{u.port}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Connection:
    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes, timeout: float = 60.0) -> tuple[int, bytes]:
        return await asyncio.wait_for(self._request(raw), timeout)

    async def _request(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 22)
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length, close = 0, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        body = await self.reader.readexactly(length) if length else b""
        if close:
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None
