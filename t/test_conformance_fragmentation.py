"""Conformance: fragmentation (RFC 6455 section 5.4)."""

import os
import random

import pytest

from conformance_lib import (ws, Conn, frame, OP_CONT,  # noqa: F401
                             OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG)
from wsraw import close_payload


def fragments(opcode, parts):
    """Frames of one message made of `parts` (a list of payloads)."""
    out = b""
    for i, p in enumerate(parts):
        out += frame(opcode if i == 0 else OP_CONT, p,
                     fin=(i == len(parts) - 1))
    return out


SPLITS = {
    "1": [b"whole"],
    "2": [b"Hel", b"lo"],
    "3": [b"a", b"b", b"c"],
    "empty-first": [b"", b"abc", b"def"],
    "empty-middle": [b"abc", b"", b"", b"def"],
    "empty-last": [b"abc", b"def", b""],
    "all-empty": [b"", b"", b""],
    "two-empty": [b"", b""],
    "10": [b"%d" % i for i in range(10)],
    "100-bytes": [bytes([65 + i % 26]) for i in range(100)],
    "big-and-small": [b"x" * 70000, b"y", b"z" * 126, b"w" * 65535],
}


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY], ids=["text", "bin"])
@pytest.mark.parametrize("split", sorted(SPLITS))
def test_fragmented_message_echoed_whole(ws, split, opcode):
    parts = SPLITS[split]
    with Conn(ws.port, "/nodeflate") as c:
        c.send_raw(fragments(opcode, parts))
        c.expect_msg(opcode, b"".join(parts))
        c.finish(1000)


def test_fragments_in_separate_writes(ws):
    with Conn(ws.port, "/echo") as c:
        parts = [b"one ", b"two ", b"three"]
        for i, p in enumerate(parts):
            c.send_frame(OP_TEXT if i == 0 else OP_CONT, p,
                         fin=(i == len(parts) - 1))
            if i < len(parts) - 1:
                c.expect_silence()         # nothing before the final frame
        c.expect_msg(OP_TEXT, b"one two three")
        c.finish(1000)


def test_back_to_back_fragmented_messages(ws):
    rnd = random.Random(5)
    msgs = []
    raw = b""
    for i in range(30):
        op = OP_TEXT if i % 3 else OP_BINARY
        parts = [bytes([97 + (i + j) % 26]) * rnd.randint(0, 300)
                 for j in range(rnd.randint(1, 6))]
        msgs.append((op, b"".join(parts)))
        raw += fragments(op, parts)
    with Conn(ws.port, "/nodeflate") as c:
        c.send_raw(raw)
        for op, data in msgs:
            c.expect_msg(op, data)
        c.finish(1000)


def test_control_frames_between_fragments(ws):
    with Conn(ws.port, "/echo") as c:
        c.send_raw(frame(OP_TEXT, b"frag", fin=False)
                   + frame(OP_PING, b"1")
                   + frame(OP_PONG, b"unasked")
                   + frame(OP_CONT, b"men", fin=False)
                   + frame(OP_PING, b"2")
                   + frame(OP_PING, b"3")
                   + frame(OP_CONT, b"ted"))
        c.expect_pong(b"1")
        c.expect_pong(b"2")
        c.expect_pong(b"3")
        c.expect_msg(OP_TEXT, b"fragmented")
        c.finish(1000)


# ---- faults --------------------------------------------------------------------

@pytest.mark.parametrize("fin", [True, False], ids=["fin", "nofin"])
def test_continuation_without_start_1002(ws, fin):
    with Conn(ws.port, "/echo") as c:
        c.send_raw(frame(OP_PING, b"p") + frame(OP_CONT, b"orphan", fin=fin))
        c.expect_pong(b"p")
        c.expect_close_code(1002)


def test_continuation_after_finished_message_1002(ws):
    with Conn(ws.port, "/echo") as c:
        c.send_raw(frame(OP_TEXT, b"a", fin=False) + frame(OP_CONT, b"b")
                   + frame(OP_CONT, b"c"))
        c.expect_msg(OP_TEXT, b"ab")
        c.expect_close_code(1002)


def test_empty_orphan_continuation_1002(ws):
    with Conn(ws.port, "/echo") as c:
        c.send_frame(OP_CONT, b"")
        c.expect_close_code(1002)


@pytest.mark.parametrize("first", [OP_TEXT, OP_BINARY], ids=["text", "bin"])
@pytest.mark.parametrize("second", [OP_TEXT, OP_BINARY],
                         ids=["then-text", "then-bin"])
@pytest.mark.parametrize("second_fin", [True, False],
                         ids=["fin", "nofin"])
def test_new_message_inside_fragmented_1002(ws, first, second, second_fin):
    with Conn(ws.port, "/echo") as c:
        c.send_raw(frame(OP_TEXT, b"done") + frame(first, b"start", fin=False)
                   + frame(OP_PING, b"p")
                   + frame(second, b"again", fin=second_fin))
        c.expect_msg(OP_TEXT, b"done")
        c.expect_pong(b"p")
        c.expect_close_code(1002)


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_fragmented_control_inside_message_1002(ws, opcode):
    payload = close_payload(1000) if opcode == OP_CLOSE else b"ctl"
    with Conn(ws.port, "/echo") as c:
        c.send_raw(frame(OP_BINARY, b"data", fin=False)
                   + frame(opcode, payload, fin=False)
                   + frame(OP_CONT, b"more"))
        c.expect_close_code(1002)


@pytest.mark.parametrize("code", [1000, 1001, 4000])
def test_close_in_middle_of_fragmented_message(ws, code):
    """A Close may come between fragments: the unfinished message is not
    delivered, the Close is echoed."""
    with Conn(ws.port, "/echo") as c:
        c.send_raw(frame(OP_TEXT, b"unfinished", fin=False)
                   + frame(OP_CLOSE, close_payload(code)))
        c.expect_close_code(code)


def test_fragmented_random_sizes(ws):
    rnd = random.Random(11)
    with Conn(ws.port, "/nodeflate") as c:
        for _ in range(8):
            data = os.urandom(rnd.randint(0, 200000))
            parts, pos = [], 0
            while pos < len(data) or not parts:
                n = rnd.choice([0, 1, 2, 125, 126, 127, 1000, 65535, 65536,
                                rnd.randint(1, 90000)])
                parts.append(data[pos:pos + n])
                pos += n
            c.send_raw(fragments(OP_BINARY, parts))
            c.expect_msg(OP_BINARY, data)
        c.finish(1000)
