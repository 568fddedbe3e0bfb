"""Interoperability with an independent client: the `websockets` library."""

import asyncio

import pytest

websockets = pytest.importorskip("websockets")


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


@pytest.mark.parametrize("compression", ["deflate", None],
                         ids=["deflate-offered", "no-compression"])
def test_websockets_echo(srv, compression):
    async def main():
        async with websockets.connect(
                "ws://127.0.0.1:%d/echo" % srv.port,
                compression=compression, max_size=None) as ws:
            await ws.send("hello \u00e9")
            assert await ws.recv() == "hello \u00e9"
            blob = bytes(range(256)) * 4000
            await ws.send(blob)
            assert await ws.recv() == blob
            await ws.send(["frag", "mented ", "text"])
            assert await ws.recv() == "fragmented text"
            pong = await ws.ping(b"lib")
            await asyncio.wait_for(pong, 5)
        assert ws.close_code == 1000
    run(main())


def test_websockets_subprotocol(srv):
    async def main():
        async with websockets.connect(
                "ws://127.0.0.1:%d/probe" % srv.port,
                subprotocols=["chat", "probe.v2"],
                origin="http://127.0.0.1:%d" % srv.port) as ws:
            assert ws.subprotocol == "probe.v2"
            await ws.send("close")
            await ws.wait_closed()
        assert ws.close_code == 1005        # a Close without status code
    run(main())


def test_websockets_dumb_increment(srv):
    async def main():
        async with websockets.connect(
                "ws://127.0.0.1:%d/dumb-increment" % srv.port) as ws:
            got = [await ws.recv() for _ in range(5)]
            assert got == ["0", "1", "2", "3", "4"]
            await ws.send("reset\n")
            while await ws.recv() != "0":
                pass
            assert await ws.recv() == "1"
    run(main())


def test_websockets_rejected_origin(srv):
    async def main():
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as e:
            async with websockets.connect(
                    "ws://127.0.0.1:%d/probe" % srv.port,
                    origin="http://evil.example"):
                pass
        assert e.value.status_code == 403
    run(main())
