"""A WebSocket upstream for the tests: an aiohttp server on a thread of its own."""

from __future__ import annotations

import asyncio
import json
import threading

import aiohttp
from aiohttp import web

from gateway_support import free_port


class WsUpstream:
    """An aiohttp server on its own loop and thread, with WebSocket endpoints:

    /echo...  echoes messages; "whoami" answers the handshake it saw (JSON); "close:<code>"
              closes with that code and reason "bye"; "big" sends 4096 bytes; records pings
    /refuse   answers HTTP 403
    /plain    answers HTTP 200 (not a WebSocket)
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        self.pings = 0
        self.closes: list[tuple[int | None, str]] = []
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "upstream did not start"

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_get("/refuse{tail:.*}", self._refuse)
        app.router.add_get("/plain{tail:.*}", self._plain)
        app.router.add_get("/{tail:.*}", self._echo)
        self._runner = web.AppRunner(app)
        self.loop.run_until_complete(self._runner.setup())
        self.loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self.loop.run_forever()

    async def _echo(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=("chat", "json"), autoping=False)
        await ws.prepare(request)
        seen = {
            "path": request.raw_path,
            "protocol": ws.ws_protocol,
            "headers": [[k.lower(), v] for k, v in request.headers.items()],
        }
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.PING:
                self.pings += 1
                await ws.pong(msg.data)
            elif msg.type is aiohttp.WSMsgType.TEXT:
                if msg.data == "whoami":
                    await ws.send_str(json.dumps(seen))
                elif msg.data.startswith("close:"):
                    await ws.close(code=int(msg.data[6:]), message=b"bye")
                elif msg.data == "big":
                    await ws.send_bytes(b"x" * 4096)
                else:
                    await ws.send_str(msg.data)
            elif msg.type is aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        self.closes.append((ws.close_code, ""))
        return ws

    @staticmethod
    async def _refuse(request: web.Request) -> web.Response:
        return web.Response(status=403, text="no")

    @staticmethod
    async def _plain(request: web.Request) -> web.Response:
        return web.Response(text="plain")

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
