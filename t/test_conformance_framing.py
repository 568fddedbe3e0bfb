"""Conformance: base framing (RFC 6455 section 5.2): lengths, masking,
pipelining, and the exact close code of each framing fault, with the
valid frames written before the fault processed first."""

import os
import struct

import pytest

from conformance_lib import (ws, Conn, frame, raw_header, OP_CONT,  # noqa: F401
                             OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG)
from wsraw import close_payload, mask_bytes

SIZES = [0, 1, 2, 124, 125, 126, 127, 128, 1000, 65534, 65535, 65536, 65537,
         100000]


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY], ids=["text", "bin"])
def test_echo_every_length_class(ws, opcode):
    """One connection, each size: the echo has the same type, FIN, no
    mask, and the minimal length encoding."""
    with Conn(ws.port, "/nodeflate") as c:
        for n in SIZES:
            data = (b"abcdefghij" * (n // 10 + 1))[:n] if opcode == OP_TEXT \
                else os.urandom(n)
            c.send_frame(opcode, data)
            f = c.recv_frame()
            assert (f.opcode, f.fin, f.rsv) == (opcode, True, 0), f
            assert f.payload == data, n
            assert f.header_len == (2 if n < 126 else 4 if n < 65536 else 10)
        c.finish(1000)


@pytest.mark.parametrize("key", [b"\x00\x00\x00\x00", b"\xff\xff\xff\xff",
                                 b"\x80\x00\x00\x01", b"\x12\x34\x56\x78"],
                         ids=["zero", "ones", "edge", "plain"])
def test_any_mask_key(ws, key):
    with Conn(ws.port, "/echo") as c:
        c.send_frame(OP_BINARY, bytes(range(256)), mask_key=key)
        c.expect_msg(OP_BINARY, bytes(range(256)))
        c.send_frame(OP_TEXT, b"masked text", mask_key=key)
        c.expect_msg(OP_TEXT, b"masked text")
        c.finish(1000)


def test_lengths_encoded_by_hand(ws):
    """Headers built byte by byte: 7-bit 125, 16-bit 126 and 65535,
    64-bit 65536."""
    with Conn(ws.port, "/nodeflate") as c:
        key = b"\x0a\x0b\x0c\x0d"
        for n, ext, b1 in [(125, b"", 125), (126, struct.pack("!H", 126), 126),
                           (65535, struct.pack("!H", 65535), 126),
                           (65536, struct.pack("!Q", 65536), 127)]:
            data = bytes(i % 251 for i in range(n))
            c.send_raw(raw_header(0x82, 0x80 | b1, ext, key)
                       + mask_bytes(data, key))
            c.expect_msg(OP_BINARY, data)
        c.finish(1000)


def test_pipelined_messages_in_one_write(ws):
    msgs = [(OP_TEXT if i % 2 else OP_BINARY, (b"%03d" % i) * (i % 40))
            for i in range(120)]
    with Conn(ws.port, "/nodeflate") as c:
        c.send_raw(b"".join(frame(op, p) for op, p in msgs))
        for op, p in msgs:
            c.expect_msg(op, p)
        c.finish(1000)


def test_empty_messages(ws):
    with Conn(ws.port, "/echo") as c:
        c.send_raw(frame(OP_TEXT, b"") + frame(OP_BINARY, b"")
                   + frame(OP_TEXT, b""))
        c.expect_msg(OP_TEXT, b"", compressed=False)
        c.expect_msg(OP_BINARY, b"", compressed=False)
        c.expect_msg(OP_TEXT, b"", compressed=False)
        c.finish(1000)


def test_no_extension_without_offer(ws):
    with Conn(ws.port, "/echo") as c:
        assert c.ext_header is None and c.pmd is None
        c.finish(1000)


# ---- faults --------------------------------------------------------------------

def _nonminimal16(n):
    key = b"\x00\x00\x00\x00"
    return raw_header(0x82, 0x80 | 126, struct.pack("!H", n), key) + b"x" * n


def _nonminimal64(n):
    key = b"\x00\x00\x00\x00"
    return raw_header(0x82, 0x80 | 127, struct.pack("!Q", n), key) + b"x" * n


FAULTS = {
    # name: (bytes of the bad frame, close code)
    "unmasked-text": (frame(OP_TEXT, b"bare", mask=False), 1002),
    "unmasked-binary": (frame(OP_BINARY, b"bare", mask=False), 1002),
    "unmasked-empty": (frame(OP_BINARY, b"", mask=False), 1002),
    "unmasked-ping": (frame(OP_PING, b"bare", mask=False), 1002),
    "unmasked-pong": (frame(OP_PONG, b"bare", mask=False), 1002),
    "unmasked-close": (frame(OP_CLOSE, close_payload(1000), mask=False),
                       1002),
    "rsv1": (frame(OP_TEXT, b"r", rsv=4), 1002),
    "rsv2": (frame(OP_TEXT, b"r", rsv=2), 1002),
    "rsv3": (frame(OP_BINARY, b"r", rsv=1), 1002),
    "opcode3": (frame(0x3, b""), 1002),
    "opcodeB": (frame(0xB, b""), 1002),
    "ping126": (frame(OP_PING, b"p" * 126), 1002),
    "pong126": (frame(OP_PONG, b"p" * 126), 1002),
    "close126": (frame(OP_CLOSE, close_payload(1000, b"r" * 124)), 1002),
    "ping-nofin": (frame(OP_PING, b"", fin=False), 1002),
    "orphan-cont": (frame(OP_CONT, b"c"), 1002),
    "nonminimal16-0": (_nonminimal16(0), 1002),
    "nonminimal16-125": (_nonminimal16(125), 1002),
    "nonminimal64-0": (_nonminimal64(0), 1002),
    "nonminimal64-125": (_nonminimal64(125), 1002),
    "nonminimal64-65535": (_nonminimal64(65535), 1002),
    "len64-msb": (raw_header(0x82, 0xFF, struct.pack("!Q", 1 << 63)), 1002),
    "len64-all-ones": (raw_header(0x82, 0xFF, b"\xff" * 8), 1002),
    "ping-len16": (raw_header(0x89, 0x80 | 126, struct.pack("!H", 5))
                   + b"x" * 5, 1002),
    "close-1byte": (frame(OP_CLOSE, b"\x03"), 1002),
    "close-code-0": (frame(OP_CLOSE, close_payload(0)), 1002),
    "close-code-1005": (frame(OP_CLOSE, close_payload(1005)), 1002),
    "bad-utf8": (frame(OP_TEXT, b"ab\xffcd"), 1007),
    "bad-utf8-reason": (frame(OP_CLOSE, close_payload(1000, b"\xc3\x28")),
                        1007),
}


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_fault_alone(ws, name):
    bad, code = FAULTS[name]
    with Conn(ws.port, "/echo") as c:
        c.send_raw(bad)
        c.expect_close_code(code)


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_fault_after_valid_frames_same_write(ws, name):
    """[text][ping][binary][fault] in one write: the echoes and the pong
    come first, in order, then the Close with the code."""
    bad, code = FAULTS[name]
    with Conn(ws.port, "/echo") as c:
        c.send_raw(frame(OP_TEXT, b"a") + frame(OP_PING, b"p")
                   + frame(OP_BINARY, b"\x00\x01") + bad
                   + frame(OP_TEXT, b"never echoed"))
        c.expect_msg(OP_TEXT, b"a")
        c.expect_pong(b"p")
        c.expect_msg(OP_BINARY, b"\x00\x01")
        c.expect_close_code(code)


@pytest.mark.parametrize("name", ["unmasked-text", "rsv2", "opcode3",
                                  "nonminimal16-125", "len64-msb"])
def test_fault_after_fragment_start(ws, name):
    """The fault in the middle of a fragmented message: the unfinished
    message is dropped, the pong before the fault is sent."""
    bad, code = FAULTS[name]
    with Conn(ws.port, "/echo") as c:
        c.send_raw(frame(OP_TEXT, b"half", fin=False) + frame(OP_PING, b"q")
                   + bad)
        c.expect_pong(b"q")
        c.expect_close_code(code)


def test_unmasked_continuation(ws):
    with Conn(ws.port, "/echo") as c:
        c.send_raw(frame(OP_BINARY, b"one", fin=False)
                   + frame(OP_CONT, b"two", mask=False))
        c.expect_close_code(1002)


def test_masked_frames_between_mixed_sizes(ws):
    """Frames of all three length encodings back to back in one write."""
    sizes = [0, 125, 126, 65535, 65536, 3, 70000, 1]
    with Conn(ws.port, "/nodeflate") as c:
        data = [os.urandom(n) for n in sizes]
        c.send_raw(b"".join(frame(OP_BINARY, d) for d in data))
        for d in data:
            c.expect_msg(OP_BINARY, d)
        c.finish(1000)
