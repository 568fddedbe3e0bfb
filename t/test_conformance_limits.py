"""Conformance: big messages, the message size limit (1009), and frames
arriving in arbitrary pieces."""

import os
import random
import time

import pytest

from conformance_lib import (ws, Conn, frame, build_frame, MiB,  # noqa: F401
                             SMALL_LIMIT, DEFAULT_LIMIT, OP_CONT, OP_TEXT,
                             OP_BINARY, OP_CLOSE, OP_PING, OP_PONG)
from wsraw import close_payload

KiB = 1024


def text_of(n, seed=0):
    """n bytes of valid UTF-8 made of 1-, 2-, 3- and 4-byte sequences,
    so that fragment cuts fall inside sequences."""
    unit = "a\u00e9\u20ac\U0001f600".encode()          # 1+2+3+4 = 10 bytes
    body = (unit * (n // len(unit) + 1))
    cut = n - n % len(unit)
    return body[:cut] + b"z" * (n - cut)


def send_message(c, opcode, data, mode, rnd, ping_every=0):
    """Sends data as one message cut according to mode; returns the pings
    sent between fragments."""
    if mode == "single":
        c.send_frame(opcode, data)
        return []
    if mode == "random":
        sizes = None
    else:
        sizes = mode
    pings, out, pos, i = [], [], 0, 0
    while True:
        n = sizes if sizes else rnd.choice(
            [1, 125, 126, 1000, 4096, 65535, 65536, 100000, 300000])
        chunk = data[pos:pos + n]
        pos += len(chunk)
        last = pos >= len(data)
        out.append(frame(opcode if i == 0 else OP_CONT, chunk, fin=last))
        if last:
            break
        i += 1
        if ping_every and i % ping_every == 0:
            p = b"ping %d" % i
            pings.append(p)
            out.append(frame(OP_PING, p))
        if len(out) >= 256:
            c.send_raw(b"".join(out))
            out = []
    c.send_raw(b"".join(out))
    return pings


def expect_pongs_then(c, pings, opcode, data):
    for p in pings:
        c.expect_pong(p, timeout=30)
    c.expect_msg(opcode, data, timeout=60)


CASES = []
for size in [64 * KiB, 256 * KiB, 1 * MiB, 4 * MiB, 16 * MiB]:
    for i, mode in enumerate(["single", 64 * KiB, 1000, "random"]):
        if size == 16 * MiB and mode == 1000:
            mode = 10000        # keep the frame count reasonable
        # Text and binary alternate; text is checked as UTF-8 by the
        # server, with fragment cuts falling inside sequences.
        kind = "text" if (i + size.bit_length()) % 2 else "bin"
        CASES.append((size, mode, kind))


@pytest.mark.parametrize("size,mode,kind", CASES, ids=[
    "%dK-%s-%s" % (s // KiB, m, k) for s, m, k in CASES])
def test_big_message_echo(ws, size, mode, kind):
    """Echoed intact; in fragmented modes about 8 pings go between the
    fragments, and their pongs come first, in order."""
    rnd = random.Random(size + len(str(mode)))
    opcode = OP_TEXT if kind == "text" else OP_BINARY
    data = text_of(size) if opcode == OP_TEXT else os.urandom(size)
    with Conn(ws.port, "/echo", timeout=60) as c:
        if mode == "single":
            every = 0
        else:
            frames = size // (mode if isinstance(mode, int) else 60000)
            every = max(1, frames // 8)
        pings = send_message(c, opcode, data, mode, rnd, ping_every=every)
        if mode != "single" and size >= 256 * KiB:
            assert pings
        expect_pongs_then(c, pings, opcode, data)
        c.finish(1000)


def test_16mib_text_exactly_default_limit(ws):
    data = text_of(DEFAULT_LIMIT)
    with Conn(ws.port, "/echo", timeout=60) as c:
        c.send_frame(OP_TEXT, data)
        c.expect_msg(OP_TEXT, data, timeout=60)
        c.finish(1000)


# ---- the size limit ---------------------------------------------------------------

@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY], ids=["text", "bin"])
def test_limit_exact_single_frame(ws, opcode):
    data = text_of(SMALL_LIMIT)
    with Conn(ws.port, "/echo1m", timeout=30) as c:
        c.send_frame(opcode, data)
        c.expect_msg(opcode, data, timeout=30)
        c.send_raw(frame(OP_PING, b"still ok")
                   + frame(opcode, data + b"z"))
        c.expect_pong(b"still ok")
        c.expect_close_code(1009)


@pytest.mark.parametrize("frag", [64 * KiB, 1000, 333333])
def test_limit_exact_fragmented(ws, frag):
    data = text_of(SMALL_LIMIT)
    rnd = random.Random(frag)
    with Conn(ws.port, "/echo1m", timeout=30) as c:
        send_message(c, OP_TEXT, data, frag, rnd)
        c.expect_msg(OP_TEXT, data, timeout=30)
        # One byte more, as a last 1-byte fragment after a ping.
        c.send_raw(b"".join(frame(OP_TEXT if i == 0 else OP_CONT,
                                  data[i:i + frag], fin=False)
                            for i in range(0, len(data), frag))
                   + frame(OP_PING, b"before excess")
                   + frame(OP_CONT, b"!"))
        c.expect_pong(b"before excess")
        c.expect_close_code(1009)


def test_limit_excess_in_middle_fragment(ws):
    """The fragment that crosses the limit is refused even though FIN is
    not set; the pong of the ping before it is sent."""
    with Conn(ws.port, "/echo1m", timeout=30) as c:
        c.send_raw(frame(OP_BINARY, b"a" * (600 * KiB), fin=False)
                   + frame(OP_PING, b"p")
                   + frame(OP_CONT, b"b" * (424 * KiB + 1), fin=False))
        c.expect_pong(b"p")
        c.expect_close_code(1009)


def test_limit_refused_on_header(ws):
    """Only the header of an oversized frame: 1009 without the payload."""
    with Conn(ws.port, "/echo1m") as c:
        c.send_raw(build_frame(OP_BINARY, b"", length=SMALL_LIMIT + 1)[:14])
        c.expect_close_code(1009, timeout=3)


def test_default_limit_plus_one_refused_on_header(ws):
    with Conn(ws.port, "/echo") as c:
        c.send_raw(frame(OP_TEXT, b"fine")
                   + build_frame(OP_BINARY, b"",
                                 length=DEFAULT_LIMIT + 1)[:14])
        c.expect_msg(OP_TEXT, b"fine")
        c.expect_close_code(1009, timeout=3)


def test_default_limit_plus_one_fragmented(ws):
    """16 MiB in 1 MiB fragments, then one more byte."""
    chunk = os.urandom(MiB)
    with Conn(ws.port, "/echo", timeout=60) as c:
        for i in range(16):
            c.send_frame(OP_BINARY if i == 0 else OP_CONT, chunk, fin=False)
        c.send_frame(OP_CONT, b"+")
        c.expect_close_code(1009, timeout=30)


def test_limit_counts_each_message_separately(ws):
    half = b"h" * (SMALL_LIMIT // 2 + 1)
    with Conn(ws.port, "/echo1m", timeout=30) as c:
        for _ in range(3):
            c.send_frame(OP_BINARY, half)
            c.expect_msg(OP_BINARY, half, timeout=30)
        c.finish(1000)


# ---- chopped writes ------------------------------------------------------------------

def stream_and_expect():
    """A mix of frames and the replies they must get, in order."""
    rnd = random.Random(3)
    big = bytes(rnd.getrandbits(8) for _ in range(70000))
    raw = (frame(OP_TEXT, b"hello")
           + frame(OP_PING, b"pi")
           + frame(OP_BINARY, b"m" * 300)
           + frame(OP_TEXT, "\u20ac".encode()[:2], fin=False)
           + frame(OP_PONG, b"ignored")
           + frame(OP_CONT, "\u20ac".encode()[2:] + b"!")
           + frame(OP_BINARY, big))
    replies = [("msg", OP_TEXT, b"hello"), ("pong", b"pi"),
               ("msg", OP_BINARY, b"m" * 300),
               ("msg", OP_TEXT, "\u20ac!".encode()),
               ("msg", OP_BINARY, big)]
    return raw, replies


def check_replies(c, replies):
    for r in replies:
        if r[0] == "pong":
            c.expect_pong(r[1])
        else:
            c.expect_msg(r[1], r[2])


def test_one_byte_writes_small_frames(ws):
    raw = (frame(OP_TEXT, b"dribble")
           + frame(OP_PING, b"drip")
           + frame(OP_BINARY, b"x" * 130)       # 16-bit length header
           + frame(OP_TEXT, b"fr", fin=False) + frame(OP_CONT, b"ag"))
    with Conn(ws.port, "/echo") as c:
        c.send_chopped(raw, [1], pause=0.001)
        c.expect_msg(OP_TEXT, b"dribble")
        c.expect_pong(b"drip")
        c.expect_msg(OP_BINARY, b"x" * 130)
        c.expect_msg(OP_TEXT, b"frag")
        c.finish(1000)


def test_one_byte_writes_64bit_header(ws):
    data = os.urandom(70000)
    raw = frame(OP_BINARY, data)
    with Conn(ws.port, "/echo") as c:
        c.send_chopped(raw[:20], [1], pause=0.002)
        c.send_raw(raw[20:])
        c.expect_msg(OP_BINARY, data)
        c.finish(1000)


def test_one_byte_writes_then_fault(ws):
    raw = (frame(OP_TEXT, b"ok") + frame(OP_PING, b"p")
           + frame(OP_TEXT, b"no mask", mask=False))
    with Conn(ws.port, "/echo") as c:
        c.send_chopped(raw, [1], pause=0.001)
        c.expect_msg(OP_TEXT, b"ok")
        c.expect_pong(b"p")
        c.expect_close_code(1002)


def test_one_byte_writes_invalid_utf8(ws):
    raw = frame(OP_TEXT, b"abc\xe2\x82\xac\xed\xa0\x80 rest", fin=False)
    with Conn(ws.port, "/echo") as c:
        c.send_chopped(raw[:6 + 10], [1], pause=0.001)   # to the 0xA0
        c.expect_close_code(1007, timeout=3)


def test_one_byte_writes_close(ws):
    with Conn(ws.port, "/echo") as c:
        c.send_chopped(frame(OP_CLOSE, close_payload(4321, b"bye")), [1],
                       pause=0.001)
        c.expect_close_code(4321)


@pytest.mark.parametrize("seed", range(6))
def test_random_small_chunks(ws, seed):
    raw, replies = stream_and_expect()
    rnd = random.Random(seed)
    sizes = [rnd.randint(1, 50) for _ in range(97)]
    with Conn(ws.port, "/echo") as c:
        pos = 0
        n = 0
        while pos < len(raw):
            k = sizes[n % len(sizes)] if pos < 400 else rnd.randint(1, 5000)
            c.send_raw(raw[pos:pos + k])
            pos += k
            n += 1
            if pos < 400 and n % 4 == 0:
                time.sleep(0.001)
        check_replies(c, replies)
        c.finish(1000)


@pytest.mark.parametrize("seed", range(3))
def test_random_chunks_fault_last(ws, seed):
    raw, replies = stream_and_expect()
    raw += frame(OP_CLOSE, b"\x03")             # 1-byte close: 1002
    rnd = random.Random(100 + seed)
    with Conn(ws.port, "/echo") as c:
        pos = 0
        while pos < len(raw):
            k = rnd.randint(1, 64) if rnd.random() < 0.7 else \
                rnd.randint(64, 20000)
            c.send_raw(raw[pos:pos + k])
            pos += k
        check_replies(c, replies)
        c.expect_close_code(1002)


def test_ping_then_default_limit_message_same_write(ws):
    """A pong still queued must not make the echo of a message of exactly
    the default limit overflow the (equal) default send queue limit."""
    data = os.urandom(DEFAULT_LIMIT)
    with Conn(ws.port, "/echo", timeout=60) as c:
        c.send_frame(OP_BINARY, data[:-1], fin=False)
        # The ping and the last fragment arrive together: the pong is
        # queued just before the echo.
        c.send_raw(frame(OP_PING, b"last") + frame(OP_CONT, data[-1:]))
        c.expect_pong(b"last")
        c.expect_msg(OP_BINARY, data, timeout=60)
        c.finish(1000)
