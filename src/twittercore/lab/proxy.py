"""A small TCP proxy to put in a link's path: delay, loss, resets and partitions without kernel netem.

    python -m twittercore.lab.proxy --listen 9001 --to 127.0.0.1:9000 --control 9002

Bytes are forwarded unchanged; what can be impaired is *when* they arrive,
which is what the application above TCP sees of a bad network:

- ``delay_ms`` (+ uniform ``jitter_ms``): every chunk is delivered that much
  later, in order, without limiting throughput (a queue per direction);
- ``loss``: the share of chunks that behave as if a segment was lost: they
  (and everything behind them) wait one retransmission timeout (200 ms);
- ``reset``: the share of chunks on which the connection is cut instead;
- ``partition = "stall"``: nothing is delivered until it is healed, new
  connections are accepted but go nowhere (a dropped-packets partition: the
  peer sees silence and its own timeouts); ``"reset"``: every connection is
  cut and new ones are closed at once (a partition with an ICMP reject).

The lab changes these at run time by sending a JSON object, one line, to the
control port (``{"delay_ms": 50, "loss": 0.1}``, ``{"partition": null}``);
the reply is the settings now in force.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import sys
from typing import Any

__all__ = ["Proxy", "control", "main"]

_RTO = 0.2  # Linux's minimum retransmission timeout: what one lost segment costs
_KEYS = {"delay_ms": float, "jitter_ms": float, "loss": float, "reset": float, "partition": (str, type(None))}


class Proxy:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.settings: dict[str, Any] = {
            "delay_ms": 0.0,
            "jitter_ms": 0.0,
            "loss": 0.0,
            "reset": 0.0,
            "partition": None,
        }
        self.healed = asyncio.Event()
        self.healed.set()
        self.writers: set[asyncio.StreamWriter] = set()
        self.rng = random.Random()
        self.stats = {"connections": 0, "resets": 0, "refused": 0}

    def update(self, changes: dict[str, Any]) -> dict[str, Any]:
        for key, value in changes.items():
            kind = _KEYS.get(key)
            if kind is None or not isinstance(value, kind if isinstance(kind, tuple) else (int, float)):
                raise ValueError(
                    f"proxy: {key} = {value!r}: expected one of {', '.join(_KEYS)} with a number (partition: stall, reset or null)"
                )
            if key == "partition" and value not in (None, "stall", "reset"):
                raise ValueError(f'proxy: partition = {value!r}: expected "stall", "reset" or null')
            self.settings[key] = value if key == "partition" else float(value)
        if self.settings["partition"] is None:
            self.healed.set()
        else:
            self.healed.clear()
            if self.settings["partition"] == "reset":
                for w in list(self.writers):
                    w.transport.abort()
        return {**self.settings, **self.stats}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats["connections"] += 1
        if self.settings["partition"] == "reset":
            self.stats["refused"] += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()  # the server is down: the client sees a reset, as without the proxy
            return
        self.writers.update((writer, up_writer))
        try:
            await asyncio.gather(self.pipe(reader, up_writer), self.pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self.writers.discard(w)
                w.transport.abort()

    async def pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One direction: read, stamp with its due time, deliver in order when due."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def deliver() -> None:
            held = 0.0  # a lost segment delays everything behind it too
            while True:
                due, data = await queue.get()
                if not data:  # the sender half-closed: pass that on
                    if not writer.transport.is_closing() and writer.can_write_eof():
                        writer.write_eof()
                    return
                await self.healed.wait()
                wait = max(due, held) - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                held = max(due, held)
                writer.write(data)
                await writer.drain()

        sender = loop.create_task(deliver())
        try:
            while True:
                data = await reader.read(65536)
                s = self.settings
                if data and s["reset"] and self.rng.random() < s["reset"]:
                    self.stats["resets"] += 1
                    writer.transport.abort()
                    return
                due = loop.time() + (s["delay_ms"] + s["jitter_ms"] * self.rng.random()) / 1e3
                if data and s["loss"] and self.rng.random() < s["loss"]:
                    due += _RTO
                queue.put_nowait((due, data))
                if not data:
                    break
            await sender
        except (OSError, asyncio.IncompleteReadError):
            writer.transport.abort()
        finally:
            sender.cancel()

    async def control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            try:
                reply = self.update(json.loads(line or b"{}"))
            except ValueError as exc:
                reply = {"error": str(exc)}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        finally:
            writer.close()


def control(port: int, changes: dict[str, Any], timeout: float = 3.0) -> dict[str, Any]:
    """Send settings to a proxy's control port (blocking); returns the settings now in force."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(json.dumps(changes).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    reply: dict[str, Any] = json.loads(data or b"{}")
    if "error" in reply:
        raise ValueError(reply["error"])
    return reply


async def _serve(listen: int, upstream: tuple[str, int], control_port: int) -> None:
    proxy = Proxy(upstream)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", listen, reuse_address=True)
    controller = await asyncio.start_server(proxy.control, "127.0.0.1", control_port, reuse_address=True)
    async with server, controller:
        await asyncio.gather(server.serve_forever(), controller.serve_forever())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m twittercore.lab.proxy", description=__doc__.split("\n")[0])
    parser.add_argument("--listen", type=int, required=True, help="port to accept on (127.0.0.1)")
    parser.add_argument("--to", required=True, help="HOST:PORT to forward to")
    parser.add_argument("--control", type=int, required=True, help="port taking JSON settings, one object a line")
    args = parser.parse_args(argv)
    host, _, port = args.to.rpartition(":")
    try:
        try:  # the proxy sits in the request path: uvloop halves what each hop costs
            import uvloop
        except ImportError:
            asyncio.run(_serve(args.listen, (host or "127.0.0.1", int(port)), args.control))
        else:
            uvloop.run(_serve(args.listen, (host or "127.0.0.1", int(port)), args.control))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
