"""Conformance: Ping and Pong (RFC 6455 sections 5.5.2, 5.5.3)."""

import os
import struct

import pytest

from conformance_lib import (ws, Conn, frame, raw_header, OP_CONT,  # noqa: F401
                             OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG)
from wsraw import close_payload


@pytest.mark.parametrize("n", [0, 1, 2, 63, 124, 125])
def test_pong_echoes_ping_payload(ws, n):
    payload = os.urandom(n)
    with Conn(ws.port, "/echo") as c:
        c.send_frame(OP_PING, payload)
        c.expect_pong(payload)
        c.finish(1000)


def test_ping_text_and_binary_payloads(ws):
    """Payloads are opaque: NUL bytes, invalid UTF-8, all byte values."""
    payloads = [b"Hello, pong", b"\x00" * 10, b"\xff\xfe\xc0\x80",
                bytes(range(125)), bytes(range(130, 255))]
    with Conn(ws.port, "/echo") as c:
        for p in payloads:
            c.send_frame(OP_PING, p)
            c.expect_pong(p)
        c.finish(1000)


def test_many_pings_one_write_pongs_in_order(ws):
    pings = [b"ping-%d" % i for i in range(40)]
    with Conn(ws.port, "/echo") as c:
        c.send_raw(b"".join(frame(OP_PING, p) for p in pings))
        for p in pings:
            c.expect_pong(p)
        c.finish(1000)


def test_pings_and_messages_keep_order(ws):
    with Conn(ws.port, "/echo") as c:
        c.send_raw(frame(OP_PING, b"1") + frame(OP_TEXT, b"t")
                   + frame(OP_PING, b"2") + frame(OP_BINARY, b"b")
                   + frame(OP_PING, b"3"))
        c.expect_pong(b"1")
        c.expect_msg(OP_TEXT, b"t")
        c.expect_pong(b"2")
        c.expect_msg(OP_BINARY, b"b")
        c.expect_pong(b"3")
        c.finish(1000)


@pytest.mark.parametrize("n", [0, 10, 125])
def test_unsolicited_pong_ignored(ws, n):
    with Conn(ws.port, "/echo") as c:
        c.send_raw(frame(OP_PONG, os.urandom(n)) + frame(OP_TEXT, b"next"))
        c.expect_msg(OP_TEXT, b"next")
        c.send_frame(OP_PONG, b"alone")
        c.expect_silence()
        c.finish(1000)


def test_many_unsolicited_pongs_ignored(ws):
    with Conn(ws.port, "/echo") as c:
        c.send_raw(b"".join(frame(OP_PONG, b"%d" % i) for i in range(50))
                   + frame(OP_PING, b"real"))
        c.expect_pong(b"real")
        c.finish(1000)


@pytest.mark.parametrize("opcode,n", [(OP_PING, 126), (OP_PING, 200),
                                      (OP_PING, 65536), (OP_PONG, 126),
                                      (OP_PONG, 1000)])
def test_control_payload_over_125_1002(ws, opcode, n):
    with Conn(ws.port, "/echo") as c:
        c.send_raw(frame(OP_PING, b"ok") + frame(opcode, b"x" * n))
        c.expect_pong(b"ok")
        c.expect_close_code(1002)


def test_ping_125_in_16bit_encoding_1002(ws):
    """125 bytes written with the 16-bit length: non-minimal and not a
    valid control frame length encoding."""
    with Conn(ws.port, "/echo") as c:
        c.send_raw(raw_header(0x89, 0x80 | 126, struct.pack("!H", 125),
                              b"\x00" * 4) + b"p" * 125)
        c.expect_close_code(1002)


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG])
def test_fragmented_control_1002(ws, opcode):
    with Conn(ws.port, "/echo") as c:
        c.send_raw(frame(opcode, b"frag", fin=False)
                   + frame(OP_CONT, b"ment"))
        c.expect_close_code(1002)


def test_pings_between_fragments_answered_before_message(ws):
    with Conn(ws.port, "/echo") as c:
        raw = b""
        for i in range(10):
            raw += frame(OP_BINARY if i == 0 else OP_CONT, b"%d" % i,
                         fin=False)
            raw += frame(OP_PING, b"between %d" % i)
            raw += frame(OP_PONG, b"ignored %d" % i)
        raw += frame(OP_CONT, b"end")
        c.send_raw(raw)
        for i in range(10):
            c.expect_pong(b"between %d" % i)
        c.expect_msg(OP_BINARY, b"0123456789end")
        c.finish(1000)


def test_ping_after_close_not_answered(ws):
    with Conn(ws.port, "/echo") as c:
        c.send_raw(frame(OP_CLOSE, close_payload(1000))
                   + frame(OP_PING, b"too late"))
        c.expect_close_code(1000)


def test_ping_on_deflate_connection_not_compressed(ws):
    with Conn(ws.port, "/minsize0", extensions="permessage-deflate") as c:
        assert c.pmd is not None
        big = b"a" * 125
        c.send_frame(OP_PING, big)
        f = c.recv_frame()
        assert (f.opcode, f.rsv, f.payload) == (OP_PONG, 0, big)
        c.finish(1000)
