"""Conformance: the closing handshake (RFC 6455 5.5.1, 7.4)."""

import struct
import time

import pytest

from conformance_lib import ws  # noqa: F401  (the fixture)
from conformance_lib import Conn, frame, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING
from wsraw import close_payload

VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012,
               1013, 1014, 3000, 3001, 3999, 4000, 4001, 4500, 4999]
INVALID_CODES = [0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999,
                 5000, 6000, 32768, 65535]
RESERVED_CODES = [1004, 1016, 1100, 2000, 2999]         # OK with the directive
NEVER_CODES = [0, 999, 1005, 1006, 1015, 5000, 65535]    # never


@pytest.mark.parametrize("code", VALID_CODES)
def test_valid_code_echoed(ws, code):
    with Conn(ws.port, "/echo") as c:
        c.send_close(code)
        f = c.expect_close_code(code)
        assert len(f.payload) >= 2


@pytest.mark.parametrize("reason", [b"", b"r", b"bye",
                                    b"x" * 123,
                                    "\u00e9".encode() * 61 + b"z",
                                    "\u20ac".encode() * 41,
                                    "\U0001f600".encode() * 30 + b"abc"],
                         ids=["none", "1", "3", "123-ascii", "123-2byte",
                              "123-3byte", "123-4byte"])
def test_close_with_reason(ws, reason):
    assert len(reason) <= 123
    with Conn(ws.port, "/echo") as c:
        c.send_close(1000, reason)
        c.expect_close_code(1000)


def test_reason_124_bytes_is_control_too_long_1002(ws):
    with Conn(ws.port, "/echo") as c:
        c.send_close(1000, b"y" * 124)
        c.expect_close_code(1002)


def test_empty_close_gets_empty_close(ws):
    with Conn(ws.port, "/echo") as c:
        c.send_close(None)
        c.expect_close_code(None)


def test_close_payload_one_byte_1002(ws):
    with Conn(ws.port, "/echo") as c:
        c.send_raw(frame(OP_TEXT, b"first") + frame(OP_CLOSE, b"\x03"))
        c.expect_msg(OP_TEXT, b"first")
        c.expect_close_code(1002)


@pytest.mark.parametrize("code", INVALID_CODES)
def test_invalid_code_1002(ws, code):
    with Conn(ws.port, "/echo") as c:
        c.send_raw(frame(OP_PING, b"p") + frame(OP_CLOSE, close_payload(code)))
        c.expect_pong(b"p")
        c.expect_close_code(1002)


@pytest.mark.parametrize("code", INVALID_CODES)
def test_invalid_code_with_reason_1002(ws, code):
    with Conn(ws.port, "/echo") as c:
        c.send_close(code, b"some reason")
        c.expect_close_code(1002)


@pytest.mark.parametrize("code", RESERVED_CODES)
def test_reserved_code_allowed_when_configured(ws, code):
    with Conn(ws.port, "/reserved") as c:
        c.send_close(code)
        c.expect_close_code(code)


@pytest.mark.parametrize("code", NEVER_CODES)
def test_never_valid_even_when_reserved_allowed(ws, code):
    with Conn(ws.port, "/reserved") as c:
        c.send_close(code)
        c.expect_close_code(1002)


@pytest.mark.parametrize("code", VALID_CODES[:4] + [3000, 4999])
def test_valid_codes_at_reserved_location(ws, code):
    with Conn(ws.port, "/reserved") as c:
        c.send_close(code, b"ok")
        c.expect_close_code(code)


@pytest.mark.parametrize("after", ["text", "binary", "ping", "bad-frame",
                                   "close", "fragment"])
def test_nothing_after_close_is_processed(ws, after):
    trailing = {"text": frame(OP_TEXT, b"late"),
                "binary": frame(OP_BINARY, b"late"),
                "ping": frame(OP_PING, b"late"),
                "bad-frame": frame(OP_TEXT, b"late", mask=False),
                "close": frame(OP_CLOSE, close_payload(1001)),
                "fragment": frame(OP_TEXT, b"la", fin=False)}[after]
    with Conn(ws.port, "/echo") as c:
        c.send_raw(frame(OP_TEXT, b"before") + frame(OP_CLOSE,
                                                     close_payload(4001))
                   + trailing)
        c.expect_msg(OP_TEXT, b"before")
        c.expect_close_code(4001)


def test_data_sent_after_close_reply_ignored(ws):
    """The server has answered the Close; frames the client still sends
    are not echoed (the connection just ends)."""
    with Conn(ws.port, "/echo") as c:
        c.send_close(1000)
        f = c.recv_frame()
        assert f.opcode == OP_CLOSE and f.close_code == 1000
        try:
            c.send_raw(frame(OP_TEXT, b"after"))
        except OSError:
            pass
        c.expect_eof(3)


def test_close_after_messages_in_same_write(ws):
    with Conn(ws.port, "/echo") as c:
        c.send_raw(frame(OP_TEXT, b"1") + frame(OP_PING, b"2")
                   + frame(OP_BINARY, b"3")
                   + frame(OP_CLOSE, close_payload(1000, b"done")))
        c.expect_msg(OP_TEXT, b"1")
        c.expect_pong(b"2")
        c.expect_msg(OP_BINARY, b"3")
        c.expect_close_code(1000)


def test_close_sent_byte_by_byte(ws):
    raw = frame(OP_CLOSE, close_payload(3003, b"slow"))
    with Conn(ws.port, "/echo") as c:
        for i in range(len(raw)):
            c.send_raw(raw[i:i + 1])
            time.sleep(0.002)
        c.expect_close_code(3003)


def test_close_fragmented_message_pending_then_close(ws):
    with Conn(ws.port, "/echo") as c:
        c.send_raw(frame(OP_BINARY, b"part", fin=False)
                   + frame(OP_PING, b"x")
                   + frame(OP_CLOSE, close_payload(1001)))
        c.expect_pong(b"x")
        c.expect_close_code(1001)


def test_code_is_big_endian(ws):
    """3000 = 0x0BB8: a server reading little-endian would see 47115."""
    with Conn(ws.port, "/echo") as c:
        c.send_raw(frame(OP_CLOSE, struct.pack("!H", 3000)))
        f = c.expect_close_code(3000)
        assert f.payload[:2] == b"\x0b\xb8"
