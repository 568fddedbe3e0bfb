"""Conformance: reserved bits and reserved opcodes (RFC 6455 5.2, RFC
7692 6): always 1002, except RSV1 on the first frame of a data message
once permessage-deflate is negotiated."""

import pytest

from conformance_lib import (ws, Conn, frame, deflate_raw, OP_CONT,  # noqa: F401
                             OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG)
from wsraw import close_payload

PMD = "permessage-deflate"

OPCODES = {"text": (OP_TEXT, b"x"), "binary": (OP_BINARY, b"x"),
           "ping": (OP_PING, b"x"), "pong": (OP_PONG, b"x"),
           "close": (OP_CLOSE, close_payload(1000))}


@pytest.mark.parametrize("rsv", range(1, 8))
@pytest.mark.parametrize("kind", sorted(OPCODES))
def test_rsv_without_extension_1002(ws, kind, rsv):
    op, payload = OPCODES[kind]
    with Conn(ws.port, "/echo") as c:
        c.send_raw(frame(OP_TEXT, b"before") + frame(op, payload, rsv=rsv))
        c.expect_msg(OP_TEXT, b"before")
        c.expect_close_code(1002)


@pytest.mark.parametrize("rsv", range(1, 8))
def test_rsv_on_continuation_without_extension_1002(ws, rsv):
    with Conn(ws.port, "/echo") as c:
        c.send_raw(frame(OP_BINARY, b"a", fin=False) + frame(OP_PING, b"i")
                   + frame(OP_CONT, b"b", rsv=rsv))
        c.expect_pong(b"i")
        c.expect_close_code(1002)


@pytest.mark.parametrize("path", ["/echo", "/nodeflate"])
def test_rsv1_refused_when_deflate_not_agreed(ws, path):
    """No offer (/echo) or compression disabled (/nodeflate): RSV1 with
    a well-formed deflate payload is still a protocol error."""
    extensions = PMD if path == "/nodeflate" else None
    with Conn(ws.port, path, extensions=extensions) as c:
        assert c.pmd is None
        c.send_frame(OP_TEXT, deflate_raw(b"compressed?"), rsv=4)
        c.expect_close_code(1002)


# ---- with permessage-deflate negotiated ------------------------------------------

@pytest.mark.parametrize("rsv", [2, 1, 3, 6, 7], ids=["rsv2", "rsv3",
                                                      "rsv2+3", "rsv1+2",
                                                      "all"])
def test_rsv2_rsv3_still_1002_with_deflate(ws, rsv):
    with Conn(ws.port, "/echo", extensions=PMD) as c:
        assert c.pmd is not None
        c.send_raw(frame(OP_TEXT, deflate_raw(b"ok"), rsv=4)
                   + frame(OP_TEXT, deflate_raw(b"bad"), rsv=rsv))
        c.expect_msg(OP_TEXT, b"ok")
        c.expect_close_code(1002)


@pytest.mark.parametrize("kind", ["ping", "pong", "close"])
def test_rsv1_on_control_1002_with_deflate(ws, kind):
    op, payload = OPCODES[kind]
    with Conn(ws.port, "/echo", extensions=PMD) as c:
        c.send_raw(frame(OP_PING, b"plain") + frame(op, payload, rsv=4))
        c.expect_pong(b"plain")
        c.expect_close_code(1002)


@pytest.mark.parametrize("first_rsv1", [True, False],
                         ids=["compressed-msg", "plain-msg"])
def test_rsv1_on_continuation_1002_with_deflate(ws, first_rsv1):
    data = deflate_raw(b"fragmented and compressed" * 4)
    with Conn(ws.port, "/echo", extensions=PMD) as c:
        c.send_raw(frame(OP_TEXT, data[:5] if first_rsv1 else b"plain",
                         rsv=4 if first_rsv1 else 0, fin=False)
                   + frame(OP_PING, b"mid")
                   + frame(OP_CONT, data[5:], rsv=4))
        c.expect_pong(b"mid")
        c.expect_close_code(1002)


def test_rsv1_first_frame_accepted_with_deflate(ws):
    text = b"rsv1 on the first frame only " * 4
    data = deflate_raw(text)
    with Conn(ws.port, "/echo", extensions=PMD) as c:
        c.send_raw(frame(OP_TEXT, data[:3], rsv=4, fin=False)
                   + frame(OP_CONT, data[3:]))
        c.expect_msg(OP_TEXT, text, compressed=True)
        c.finish(1000)


# ---- reserved opcodes ----------------------------------------------------------

RESERVED_OPS = [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF]


@pytest.mark.parametrize("opcode", RESERVED_OPS,
                         ids=["op%X" % o for o in RESERVED_OPS])
def test_reserved_opcode_1002(ws, opcode):
    with Conn(ws.port, "/echo") as c:
        c.send_raw(frame(OP_TEXT, b"a") + frame(OP_PING, b"p")
                   + frame(opcode, b"payload")
                   + frame(OP_TEXT, b"never"))
        c.expect_msg(OP_TEXT, b"a")
        c.expect_pong(b"p")
        c.expect_close_code(1002)


@pytest.mark.parametrize("opcode", [0x3, 0x7, 0xB, 0xF])
@pytest.mark.parametrize("variant", ["empty", "nofin", "in-message",
                                     "deflate"])
def test_reserved_opcode_variants_1002(ws, opcode, variant):
    ext = PMD if variant == "deflate" else None
    with Conn(ws.port, "/echo", extensions=ext) as c:
        if variant == "empty":
            c.send_frame(opcode, b"")
        elif variant == "nofin":
            c.send_frame(opcode, b"x", fin=False)
        elif variant == "in-message":
            c.send_raw(frame(OP_TEXT, b"start", fin=False)
                       + frame(opcode, b"x"))
        else:
            c.send_frame(opcode, deflate_raw(b"x"), rsv=4)
        c.expect_close_code(1002)
