"""Conformance: UTF-8 in text messages and close reasons (RFC 6455 8.1,
RFC 3629): valid text echoed whatever the fragmentation, invalid text
refused with 1007 as soon as an impossible byte arrives."""

import pytest

from conformance_lib import (ws, Conn, frame, build_frame,  # noqa: F401
                             utf8_first_bad, OP_CONT, OP_TEXT, OP_BINARY,
                             OP_CLOSE, OP_PING)
from wsraw import close_payload

VALID = {
    "ascii": b"plain ASCII, \x00 NUL and \x7f DEL",
    "u+007f": "\u007f".encode(),
    "u+0080": "\u0080".encode(),
    "u+07ff": "\u07ff".encode(),
    "u+0800": "\u0800".encode(),
    "u+d7ff": "\ud7ff".encode(),
    "u+e000": "\ue000".encode(),
    "u+fffd": "\ufffd".encode(),
    "u+fffe": "\ufffe".encode(),
    "u+ffff": "\uffff".encode(),
    "u+10000": "\U00010000".encode(),
    "u+10ffff": "\U0010ffff".encode(),
    "two-byte": "\u00e9\u00df\u03a9\u0416".encode(),
    "three-byte": "\u20ac\u4e2d\u6587\uac00".encode(),
    "four-byte": "\U0001d11e\U0001f600\U00020000".encode(),
    "mixed": "a\u00e9\u20ac\U0001f600z".encode(),
    "bom": b"\xef\xbb\xbfbom",
}

# name: bytes of an invalid text payload
INVALID = {
    "c0": b"\xc0", "c1": b"\xc1\xbf", "f5": b"\xf5\x80\x80\x80",
    "f8": b"\xf8\x88\x80\x80\x80", "fc": b"\xfc\x84\x80\x80\x80\x80",
    "fe": b"\xfe", "ff": b"\xff",
    "lone-80": b"ab\x80cd", "lone-bf": b"\xbf", "two-conts": b"\x80\x80",
    "overlong-2-nul": b"\xc0\x80", "overlong-2-slash": b"\xc0\xaf",
    "overlong-2-max": b"\xc1\xbf",
    "overlong-3-nul": b"\xe0\x80\x80", "overlong-3-max": b"\xe0\x9f\xbf",
    "overlong-4-nul": b"\xf0\x80\x80\x80", "overlong-4-max": b"\xf0\x8f\xbf\xbf",
    "surrogate-d800": b"\xed\xa0\x80", "surrogate-dbff": b"\xed\xaf\xbf",
    "surrogate-dc00": b"\xed\xb0\x80", "surrogate-dfff": b"\xed\xbf\xbf",
    "surrogate-pair": b"\xed\xa0\xbd\xed\xb2\xa9",
    "above-10ffff": b"\xf4\x90\x80\x80", "f7-max": b"\xf7\xbf\xbf\xbf",
    "missing-cont-2": b"\xc3\x28", "missing-cont-3": b"\xe2\x28\xa1",
    "missing-cont-3b": b"\xe2\x82\x28", "missing-cont-4": b"\xf0\x28\x8c\xbc",
    "missing-cont-4c": b"\xf0\x9f\x98\x28",
    "after-valid": "\u20ac\u00e9ok".encode() + b"\xed\xa0\x80tail",
    # Cut at the end of the message: only detectable once FIN arrives.
    "trunc-2": b"ok\xc3", "trunc-3": b"ok\xe2\x82", "trunc-4": b"ok\xf0\x9f\x98",
    "trunc-4-1": b"\xf4",
}

ALL_VALID = b"".join(VALID[k] for k in sorted(VALID))


def test_invalid_table_is_really_invalid():
    for name, data in INVALID.items():
        with pytest.raises(UnicodeDecodeError):
            data.decode("utf-8")
        bad, trunc = utf8_first_bad(data)
        assert (bad is None) == trunc == name.startswith("trunc"), name
    for data in VALID.values():
        data.decode("utf-8")
        assert utf8_first_bad(data) == (None, False)


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_text_echoed(ws, name):
    data = VALID[name]
    with Conn(ws.port, "/nodeflate") as c:
        c.send_frame(OP_TEXT, data)
        c.expect_msg(OP_TEXT, data)
        c.send_frame(OP_TEXT, b"<" + data + b">")
        c.expect_msg(OP_TEXT, b"<" + data + b">")
        c.finish(1000)


def test_valid_text_split_at_every_position(ws):
    """Two fragments, cut at every byte of a text holding every kind of
    sequence; then one byte per fragment."""
    data = ALL_VALID
    with Conn(ws.port, "/nodeflate") as c:
        raw = b""
        for i in range(len(data) + 1):
            raw += frame(OP_TEXT, data[:i], fin=False) + frame(OP_CONT,
                                                                data[i:])
        c.send_raw(raw)
        for i in range(len(data) + 1):
            c.expect_msg(OP_TEXT, data)
        c.send_raw(frame(OP_TEXT, b"", fin=False)
                   + b"".join(frame(OP_CONT, data[i:i + 1], fin=False)
                              for i in range(len(data)))
                   + frame(OP_CONT, b""))
        c.expect_msg(OP_TEXT, data)
        c.finish(1000)


def test_invalid_utf8_in_binary_is_fine(ws):
    data = b"".join(INVALID.values())
    with Conn(ws.port, "/nodeflate") as c:
        c.send_frame(OP_BINARY, data)
        c.expect_msg(OP_BINARY, data)
        c.finish(1000)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_text_1007(ws, name):
    """Whole message in one frame, after a valid one."""
    with Conn(ws.port, "/echo") as c:
        c.send_raw(frame(OP_TEXT, b"valid first")
                   + frame(OP_TEXT, INVALID[name])
                   + frame(OP_TEXT, b"never"))
        c.expect_msg(OP_TEXT, b"valid first")
        c.expect_close_code(1007)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_text_split_at_every_position_1007(ws, name):
    """Two fragments, each cut point on its own connection; a ping after
    the first fragment is answered (nothing was wrong yet) unless the
    first fragment already holds an impossible byte."""
    data = b"<<" + INVALID[name]
    bad, _ = utf8_first_bad(data)
    for i in range(len(data) + 1):
        with Conn(ws.port, "/echo") as c:
            c.send_raw(frame(OP_TEXT, data[:i], fin=False)
                       + frame(OP_PING, b"%d" % i)
                       + frame(OP_CONT, data[i:]))
            if bad is None or bad >= i:
                c.expect_pong(b"%d" % i)
            c.expect_close_code(1007)


@pytest.mark.parametrize("name", sorted(n for n in INVALID
                                        if not n.startswith("trunc")))
def test_invalid_text_fails_fast_fragment(ws, name):
    """Only the start of a message, up to the impossible byte, without
    FIN: the 1007 must come without the rest."""
    data = b"start " + INVALID[name]
    bad, _ = utf8_first_bad(data)
    with Conn(ws.port, "/echo") as c:
        c.send_frame(OP_TEXT, data[:bad + 1], fin=False)
        c.expect_close_code(1007, timeout=3)


@pytest.mark.parametrize("name", sorted(n for n in INVALID
                                        if not n.startswith("trunc")))
def test_invalid_text_fails_fast_partial_frame(ws, name):
    """A single frame announcing 100000 bytes, of which only the bytes up
    to the impossible one are sent."""
    data = b"head " + INVALID[name]
    bad, _ = utf8_first_bad(data)
    payload = data + b"a" * (100000 - len(data))
    raw = build_frame(OP_TEXT, payload)
    with Conn(ws.port, "/echo") as c:
        c.send_raw(raw[:14 + bad + 1])      # 10-byte header + mask key
        c.expect_close_code(1007, timeout=3)


def test_invalid_in_later_fragment_fails_fast(ws):
    with Conn(ws.port, "/echo") as c:
        c.send_raw(frame(OP_TEXT, b"good \xe2\x82", fin=False)
                   + frame(OP_CONT, b"\xac more good ", fin=False)
                   + frame(OP_PING, b"still fine")
                   + frame(OP_CONT, b"\xf0\x9f", fin=False)
                   + frame(OP_CONT, b"\x98\x80 then \xc0", fin=False))
        c.expect_pong(b"still fine")
        c.expect_close_code(1007, timeout=3)


def test_truncated_sequence_completed_by_next_fragment_is_fine(ws):
    with Conn(ws.port, "/echo") as c:
        c.send_raw(frame(OP_TEXT, b"\xf0", fin=False)
                   + frame(OP_CONT, b"\x9f", fin=False)
                   + frame(OP_PING, b"")
                   + frame(OP_CONT, b"\x98", fin=False)
                   + frame(OP_CONT, b"\x80"))
        c.expect_pong(b"")
        c.expect_msg(OP_TEXT, "\U0001f600".encode())
        c.finish(1000)


def test_utf8_state_reset_between_messages(ws):
    """A message that ends cleanly leaves no state: the next message may
    start with anything valid."""
    with Conn(ws.port, "/echo") as c:
        for data in [b"\xc3\xa9", b"\xe2\x82\xac", b"\xf0\x9f\x98\x80", b"a"]:
            c.send_frame(OP_TEXT, data)
            c.expect_msg(OP_TEXT, data)
        c.finish(1000)


# ---- close reasons -------------------------------------------------------------

@pytest.mark.parametrize("name", ["two-byte", "three-byte", "four-byte",
                                  "u+10ffff", "mixed"])
def test_close_reason_valid_utf8(ws, name):
    with Conn(ws.port, "/echo") as c:
        c.send_close(1000, VALID[name])
        c.expect_close_code(1000)


@pytest.mark.parametrize("name", ["ff", "overlong-2-nul", "surrogate-d800",
                                  "above-10ffff", "trunc-3", "lone-80"])
def test_close_reason_invalid_utf8_1007(ws, name):
    with Conn(ws.port, "/echo") as c:
        c.send_raw(frame(OP_PING, b"p")
                   + frame(OP_CLOSE, close_payload(1000, INVALID[name])))
        c.expect_pong(b"p")
        c.expect_close_code(1007)
