"""Conformance: permessage-deflate (RFC 7692): negotiation, compressed
messages in every size class, fragmentation, context takeover, window
sizes, invalid data, compression bombs."""

import os
import random
import zlib

import pytest

from conformance_lib import ws  # noqa: F401  (the fixture)
from conformance_lib import (Conn, frame, Deflater, deflate_raw, inflate_raw,
                             parse_extensions, MiB, SMALL_LIMIT, DEFAULT_LIMIT,
                             SERVER_BITS, CLIENT_BITS, TAIL, OP_CONT, OP_TEXT,
                             OP_BINARY, OP_PING, OP_PONG)

PMD = "permessage-deflate"
SNCT = "server_no_context_takeover"
CNCT = "client_no_context_takeover"
SMWB = "server_max_window_bits"
CMWB = "client_max_window_bits"
DEF = {SNCT: None, CNCT: None}


def with_(**kw):
    d = dict(DEF)
    for k, v in kw.items():
        d[{"smwb": SMWB, "cmwb": CMWB}[k]] = str(v)
    return d


def agreed(c):
    """The parsed response: None, or the parameter dict."""
    if c.ext_header is None:
        return None
    exts = parse_extensions(c.ext_header)
    assert len(exts) == 1 and exts[0][0] == PMD, c.ext_header
    return exts[0][1]


def window_data(bits):
    """A random block repeated at a distance larger than 2**bits (and,
    below 15 bits, within 32 KiB): whoever compresses it with a larger
    window than agreed makes the strict inflate fail."""
    d = min(int(1.5 * (1 << bits)) + 300, 30000)
    r = random.Random(bits).randbytes(d)
    return r + r + b"tail" * 20


def roundtrip(c, messages=3, bits_data=None):
    """Messages compressed as agreed (the client window, the client's
    context takeover) are echoed and inflate with the agreed server
    window; returns the echoes."""
    p = c.pmd
    z = Deflater(bits=p.client_bits, takeover=not p.client_nct)
    data = window_data(bits_data or 9)
    out = []
    for i in range(messages):
        msg = data + b"#%d" % i
        c.send_frame(OP_BINARY, z.compress(msg), rsv=4)
        out.append(c.expect_msg(OP_BINARY, msg, compressed=True))
    c.finish(1000)
    return out


# ---- negotiation ---------------------------------------------------------------

NEGOTIATION = {
    # name: (offer, expected response params or None = no extension)
    "plain": (PMD, DEF),
    "client-bits-novalue": (PMD + "; client_max_window_bits", DEF),
    "snct": (PMD + "; server_no_context_takeover", DEF),
    "cnct": (PMD + "; client_no_context_takeover", DEF),
    "all-params": (PMD + "; server_no_context_takeover; "
                   "client_no_context_takeover; server_max_window_bits=10; "
                   "client_max_window_bits", with_(smwb=10)),
    "no-spaces": (PMD + ";server_max_window_bits=11", with_(smwb=11)),
    "quoted-value": (PMD + '; server_max_window_bits="12"', with_(smwb=12)),
    "smwb-8-declined": (PMD + "; server_max_window_bits=8", None),
    "smwb-8-then-9": (PMD + "; server_max_window_bits=8, " + PMD
                      + "; server_max_window_bits=9", with_(smwb=9)),
    "smwb-8-then-plain": (PMD + "; server_max_window_bits=8, " + PMD, DEF),
    "unknown-param": (PMD + "; foo", None),
    "unknown-param-value": (PMD + "; foo=1", None),
    "unknown-then-good": (PMD + "; foo=1, " + PMD
                          + "; server_max_window_bits=12", with_(smwb=12)),
    "dup-snct": (PMD + "; server_no_context_takeover; "
                 "server_no_context_takeover", None),
    "dup-cnct": (PMD + "; client_no_context_takeover; "
                 "client_no_context_takeover", None),
    "dup-smwb": (PMD + "; server_max_window_bits=10; "
                 "server_max_window_bits=10", None),
    "dup-cmwb": (PMD + "; client_max_window_bits; client_max_window_bits",
                 None),
    "dup-then-good": (PMD + "; server_max_window_bits=10; "
                      "server_max_window_bits=11, " + PMD, DEF),
    "smwb-16": (PMD + "; server_max_window_bits=16", None),
    "smwb-7": (PMD + "; server_max_window_bits=7", None),
    "smwb-0": (PMD + "; server_max_window_bits=0", None),
    "smwb-leading-zero": (PMD + "; server_max_window_bits=010", None),
    "smwb-word": (PMD + "; server_max_window_bits=ten", None),
    "smwb-novalue": (PMD + "; server_max_window_bits", None),
    "cmwb-16": (PMD + "; client_max_window_bits=16", None),
    "cmwb-7": (PMD + "; client_max_window_bits=7", None),
    "snct-value": (PMD + "; server_no_context_takeover=1", None),
    "cnct-value": (PMD + '; client_no_context_takeover="x"', None),
    "bad-then-good": (PMD + "; server_max_window_bits=16, " + PMD
                      + "; client_max_window_bits", DEF),
    "other-ext-only": ("x-webkit-deflate-frame", None),
    "other-ext-first": ("foo; bar=1, " + PMD, DEF),
    "similar-name": (PMD + "-x", None),
    "empty-elements": (", " + PMD + " ,,", DEF),
    # Malformed headers: no extension, the handshake goes on.
    "mal-trailing-semicolon": (PMD + ";", None),
    "mal-empty-param": (PMD + "; ; server_no_context_takeover", None),
    "mal-unterminated-quote": (PMD + '; server_max_window_bits="10', None),
    "mal-two-tokens": (PMD + " server_no_context_takeover", None),
    "mal-leading-semicolon": ("; " + PMD, None),
    "mal-no-param-name": (PMD + "; =10", None),
    "mal-double-equals": (PMD + "; server_max_window_bits==10", None),
    "mal-after-good": (PMD + ", foo;;", None),
}


@pytest.mark.parametrize("name", sorted(NEGOTIATION))
def test_negotiation(ws, name):
    offer, want = NEGOTIATION[name]
    with Conn(ws.port, "/echo", extensions=offer) as c:
        assert c.response.status == 101
        assert agreed(c) == want, c.ext_header
        if want is None:
            c.send_frame(OP_TEXT, b"no extension: still works")
            c.expect_msg(OP_TEXT, b"no extension: still works")
            c.finish(1000)
        else:
            roundtrip(c)


@pytest.mark.parametrize("bits", SERVER_BITS)
def test_client_asks_server_window(ws, bits):
    with Conn(ws.port, "/echo",
              extensions=PMD + "; server_max_window_bits=%d" % bits) as c:
        assert agreed(c) == with_(smwb=bits)
        roundtrip(c, bits_data=bits)


def test_client_offers_client_window_value_unconfigured(ws):
    """No WebSocketCompressionClientWindowBits: the response may only
    leave client_max_window_bits out or hold the client's own value."""
    with Conn(ws.port, "/echo", extensions=PMD
              + "; client_max_window_bits=10") as c:
        got = agreed(c)
        assert got in (DEF, with_(cmwb=10)), c.ext_header
        roundtrip(c)


def test_two_header_lines(ws):
    with Conn(ws.port, "/echo", headers=[
            ("Sec-WebSocket-Extensions", "foo"),
            ("Sec-WebSocket-Extensions",
             PMD + "; server_max_window_bits=11")]) as c:
        assert agreed(c) == with_(smwb=11)
        roundtrip(c)


def test_compression_off_location(ws):
    with Conn(ws.port, "/nodeflate", extensions=PMD) as c:
        assert c.ext_header is None
        c.send_frame(OP_TEXT, b"x" * 200)
        c.expect_msg(OP_TEXT, b"x" * 200, compressed=False)
        c.finish(1000)


@pytest.mark.parametrize("bits", SERVER_BITS)
@pytest.mark.parametrize("asked", [None, 9, 12, 15])
def test_server_window_directive(ws, bits, asked):
    offer = PMD if asked is None else \
        PMD + "; server_max_window_bits=%d" % asked
    with Conn(ws.port, "/sbits%d" % bits, extensions=offer) as c:
        eff = bits if asked is None else min(bits, asked)
        if asked is None and bits == 15:
            assert agreed(c) == DEF
        else:
            assert agreed(c) == with_(smwb=eff)
        roundtrip(c, messages=2, bits_data=eff)


@pytest.mark.parametrize("bits", CLIENT_BITS)
@pytest.mark.parametrize("offer", ["none", "novalue", "value10", "value9"])
def test_client_window_directive(ws, bits, offer):
    ext = {"none": PMD, "novalue": PMD + "; client_max_window_bits",
           "value10": PMD + "; client_max_window_bits=10",
           "value9": PMD + "; client_max_window_bits=9"}[offer]
    with Conn(ws.port, "/cbits%d" % bits, extensions=ext) as c:
        got = agreed(c)
        if offer == "none":
            assert got == DEF, c.ext_header
        else:
            cap = {"novalue": 15, "value10": 10, "value9": 9}[offer]
            eff = min(bits, cap)
            if eff < 15:
                assert got == with_(cmwb=eff), c.ext_header
            else:
                assert got in (DEF, with_(cmwb=15)), c.ext_header
        roundtrip(c, messages=2)


def test_client_window_off_directive(ws):
    with Conn(ws.port, "/cbitsoff",
              extensions=PMD + "; client_max_window_bits") as c:
        assert agreed(c) == DEF
        roundtrip(c)


@pytest.mark.parametrize("path,offer,want", [
    ("/ctx", PMD, {}),
    ("/ctx", PMD + "; client_no_context_takeover", {CNCT: None}),
    ("/ctx", PMD + "; server_no_context_takeover", {SNCT: None}),
    ("/ctx", PMD + "; server_no_context_takeover; client_no_context_takeover",
     DEF),
    ("/sctx", PMD, {CNCT: None}),
    ("/cctx", PMD, {SNCT: None}),
    ("/cctx", PMD + "; client_no_context_takeover", DEF),
], ids=["ctx", "ctx-cnct", "ctx-snct", "ctx-both", "sctx", "cctx",
        "cctx-cnct"])
def test_context_takeover_directives(ws, path, offer, want):
    with Conn(ws.port, path, extensions=offer) as c:
        assert agreed(c) == want, c.ext_header
        roundtrip(c, messages=3)


# ---- compressed messages -----------------------------------------------------------

SIZES = [0, 1, 63, 64, 125, 126, 65535, 65536, MiB]


def payload_of(opcode, n, seed):
    """n bytes: valid UTF-8 text (1- to 4-byte sequences) or random."""
    if opcode == OP_TEXT:
        unit = "abc \u00e9\u20ac\U0001f600 ".encode()
        whole = n - n % len(unit)
        return (unit * (n // len(unit)))[:whole] + b"z" * (n - whole)
    return random.Random(seed).randbytes(n)


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY], ids=["text", "bin"])
@pytest.mark.parametrize("n", SIZES)
def test_compressed_sizes(ws, n, opcode):
    data = payload_of(opcode, n, n)
    with Conn(ws.port, "/echo", extensions=PMD, timeout=30) as c:
        c.send_frame(opcode, deflate_raw(data), rsv=4)
        c.expect_msg(opcode, data, compressed=(n >= 64))
        # The same message uncompressed on the same connection.
        c.send_frame(opcode, data)
        c.expect_msg(opcode, data, compressed=(n >= 64))
        c.finish(1000)


@pytest.mark.parametrize("cut", ["2", "3", "10", "bytes", "empty-first",
                                 "empty-last"])
def test_compressed_fragmented(ws, cut):
    data = payload_of(OP_TEXT, 5000, 1) + os.urandom(300).hex().encode()
    comp = deflate_raw(data)
    if cut == "bytes":
        parts = [comp[i:i + 1] for i in range(len(comp))]
    elif cut == "empty-first":
        parts = [b"", comp[:10], comp[10:]]
    elif cut == "empty-last":
        parts = [comp[:len(comp) // 2], comp[len(comp) // 2:], b""]
    else:
        k = int(cut)
        step = len(comp) // k + 1
        parts = [comp[i:i + step] for i in range(0, len(comp), step)]
    raw = b""
    for i, p in enumerate(parts):
        raw += frame(OP_TEXT if i == 0 else OP_CONT, p,
                     fin=(i == len(parts) - 1), rsv=4 if i == 0 else 0)
        if i == 0 and len(parts) > 1:
            raw += frame(OP_PING, b"between")
    with Conn(ws.port, "/echo", extensions=PMD) as c:
        c.send_raw(raw)
        if len(parts) > 1:
            c.expect_pong(b"between")
        c.expect_msg(OP_TEXT, data, compressed=True)
        c.finish(1000)


def test_compressed_fragmented_big_with_pings(ws):
    data = random.Random(4).randbytes(MiB // 2) * 2 + b"end"
    comp = deflate_raw(data)
    raw, pings = b"", []
    frags = [comp[i:i + 4000] for i in range(0, len(comp), 4000)]
    for i, p in enumerate(frags):
        raw += frame(OP_BINARY if i == 0 else OP_CONT, p,
                     fin=(i == len(frags) - 1), rsv=4 if i == 0 else 0)
        if i % 37 == 5 and i < len(frags) - 1:
            pings.append(b"%d" % i)
            raw += frame(OP_PING, pings[-1])
    with Conn(ws.port, "/echo", extensions=PMD, timeout=30) as c:
        c.send_raw(raw)
        for p in pings:
            c.expect_pong(p)
        c.expect_msg(OP_BINARY, data, compressed=True, timeout=30)
        c.finish(1000)


def test_mixed_compressed_and_plain_messages(ws):
    a, b, d = b"A" * 500, "\u20ac".encode() * 100, os.urandom(200)
    ca = deflate_raw(a)
    with Conn(ws.port, "/echo", extensions=PMD) as c:
        c.send_raw(frame(OP_TEXT, ca, rsv=4)
                   + frame(OP_BINARY, d)
                   + frame(OP_TEXT, b[:100], fin=False)
                   + frame(OP_CONT, b[100:])
                   + frame(OP_PING, b"p")
                   + frame(OP_BINARY, deflate_raw(d)[:7], rsv=4, fin=False)
                   + frame(OP_CONT, deflate_raw(d)[7:])
                   + frame(OP_TEXT, deflate_raw(b"x"), rsv=4))
        c.expect_msg(OP_TEXT, a, compressed=True)
        c.expect_msg(OP_BINARY, d, compressed=True)
        c.expect_msg(OP_TEXT, b, compressed=True)
        c.expect_pong(b"p")
        c.expect_msg(OP_BINARY, d, compressed=True)
        c.expect_msg(OP_TEXT, b"x", compressed=False)
        c.finish(1000)


@pytest.mark.parametrize("payload", [b"", b"\x00", b"\x02\x00",
                                     b"\x03\x00"],
                         ids=["empty", "empty-stored", "empty-fixed",
                              "final-fixed"])
def test_compressed_empty_message(ws, payload):
    with Conn(ws.port, "/echo", extensions=PMD) as c:
        c.send_frame(OP_TEXT, payload, rsv=4)
        c.expect_msg(OP_TEXT, b"", compressed=False)
        c.finish(1000)


def test_bfinal_stream_accepted(ws):
    """A payload ending with a BFINAL block (RFC 7692 7.2.3.3), sent as
    zlib finished it."""
    data = b"the final block " * 20
    with Conn(ws.port, "/echo", extensions=PMD) as c:
        c.send_frame(OP_TEXT, deflate_raw(data, final=True), rsv=4)
        c.expect_msg(OP_TEXT, data, compressed=True)
        c.send_frame(OP_TEXT, deflate_raw(data), rsv=4)
        c.expect_msg(OP_TEXT, data, compressed=True)
        c.finish(1000)


@pytest.mark.parametrize("level", [0, 1, 9])
def test_client_compression_levels(ws, level):
    data = payload_of(OP_TEXT, 20000, 0)
    with Conn(ws.port, "/echo", extensions=PMD) as c:
        c.send_frame(OP_TEXT, deflate_raw(data, level=level), rsv=4)
        c.expect_msg(OP_TEXT, data, compressed=True)
        c.finish(1000)


@pytest.mark.parametrize("path", ["/level0", "/level9"])
def test_server_compression_level(ws, path):
    data = payload_of(OP_TEXT, 20000, 0)
    with Conn(ws.port, path, extensions=PMD) as c:
        c.send_frame(OP_TEXT, data)
        m = c.expect_msg(OP_TEXT, data, compressed=True)
        if path == "/level0":
            assert len(m.wire) >= len(data)      # stored blocks
        else:
            assert len(m.wire) < len(data) // 10
        c.finish(1000)


@pytest.mark.parametrize("path,n,compressed", [
    ("/echo", 63, False), ("/echo", 64, True),
    ("/minsize0", 0, True), ("/minsize0", 1, True),
    ("/minsize1k", 999, False), ("/minsize1k", 1000, True)])
def test_min_size(ws, path, n, compressed):
    data = b"m" * n
    with Conn(ws.port, path, extensions=PMD) as c:
        c.send_frame(OP_BINARY, deflate_raw(data), rsv=4)
        m = c.expect_msg(OP_BINARY, data, compressed=compressed)
        if compressed and n == 0:
            assert inflate_raw(m.wire) == b""
        c.finish(1000)


def test_control_frames_never_compressed(ws):
    with Conn(ws.port, "/minsize0", extensions=PMD) as c:
        for p in [b"", b"a" * 125, os.urandom(50)]:
            c.send_frame(OP_PING, p)
            f = c.recv_frame()
            assert (f.opcode, f.rsv, f.payload) == (OP_PONG, 0, p)
        c.send_close(1000, b"a" * 100)
        f = c.expect_close_code(1000)
        assert f.rsv == 0


# ---- context takeover ----------------------------------------------------------------

def test_context_takeover_both_ways(ws):
    block = random.Random(9).randbytes(3000)
    with Conn(ws.port, "/ctx", extensions=PMD) as c:
        assert agreed(c) == {}
        z = Deflater(takeover=True)
        first = z.compress(block)
        second = z.compress(block)
        assert len(second) < 100 < len(first)   # the client reused its window
        with pytest.raises(zlib.error):
            inflate_raw(second)                 # needs the first message
        c.send_frame(OP_BINARY, first, rsv=4)
        m1 = c.expect_msg(OP_BINARY, block, compressed=True)
        c.send_frame(OP_BINARY, second, rsv=4)
        m2 = c.expect_msg(OP_BINARY, block, compressed=True)
        # The server kept its window: its second echo refers to the first.
        assert len(m2.wire) < 100 < len(m1.wire)
        fresh = zlib.decompressobj(-15)
        try:
            out = fresh.decompress(m2.wire + TAIL)
        except zlib.error:
            out = None
        assert out != block
        # A third one, fragmented, with a ping between the fragments.
        third = z.compress(block + b"3")
        c.send_raw(frame(OP_BINARY, third[:3], rsv=4, fin=False)
                   + frame(OP_PING, b"mid")
                   + frame(OP_CONT, third[3:]))
        c.expect_pong(b"mid")
        c.expect_msg(OP_BINARY, block + b"3", compressed=True)
        c.finish(1000)


def test_context_takeover_survives_uncompressed_messages(ws):
    """Plain messages (no RSV1) in between do not touch the windows."""
    block = random.Random(10).randbytes(2000)
    with Conn(ws.port, "/ctx", extensions=PMD) as c:
        z = Deflater(takeover=True)
        c.send_frame(OP_BINARY, z.compress(block), rsv=4)
        c.expect_msg(OP_BINARY, block, compressed=True)
        c.send_frame(OP_TEXT, b"short plain")
        c.expect_msg(OP_TEXT, b"short plain", compressed=False)
        c.send_frame(OP_BINARY, z.compress(block), rsv=4)
        c.expect_msg(OP_BINARY, block, compressed=True)
        c.finish(1000)


def test_no_context_takeover_each_echo_standalone(ws):
    block = random.Random(11).randbytes(3000)
    with Conn(ws.port, "/echo", extensions=PMD) as c:
        assert agreed(c) == DEF
        for _ in range(3):
            c.send_frame(OP_BINARY, deflate_raw(block), rsv=4)
            m = c.expect_msg(OP_BINARY, block, compressed=True)
            assert inflate_raw(m.wire) == block     # a fresh window
            assert len(m.wire) > 2000
        c.finish(1000)


def test_client_breaking_no_context_takeover_1007(ws):
    """client_no_context_takeover was agreed: a message referring to the
    previous one is invalid data for the server."""
    block = random.Random(12).randbytes(3000)
    with Conn(ws.port, "/echo", extensions=PMD) as c:
        z = Deflater(takeover=True)
        c.send_frame(OP_BINARY, z.compress(block), rsv=4)
        c.expect_msg(OP_BINARY, block, compressed=True)
        c.send_frame(OP_BINARY, z.compress(block), rsv=4)
        c.expect_close_code(1007)


def test_server_context_takeover_only(ws):
    """/sctx: the server keeps its window, the client must not."""
    block = random.Random(13).randbytes(3000)
    with Conn(ws.port, "/sctx", extensions=PMD) as c:
        assert agreed(c) == {CNCT: None}
        wires = []
        for _ in range(2):
            c.send_frame(OP_BINARY, deflate_raw(block), rsv=4)
            wires.append(c.expect_msg(OP_BINARY, block, compressed=True).wire)
        assert len(wires[1]) < 100 < len(wires[0])
        c.finish(1000)


# ---- faults ------------------------------------------------------------------------

INVALID_DEFLATE = {
    "reserved-btype": b"\xff\xff\xff\xff",
    "stored-len-mismatch": b"\x00\x05\x00\x00\x00hello",
    "garbage": b"this is not deflate data at all",
    "truncated-stored": b"\x00\x64\x00\x9b\xff" + b"0123456789",
}


@pytest.mark.parametrize("name", sorted(INVALID_DEFLATE))
def test_invalid_compressed_data_1007(ws, name):
    with Conn(ws.port, "/echo", extensions=PMD) as c:
        c.send_raw(frame(OP_TEXT, deflate_raw(b"fine"), rsv=4)
                   + frame(OP_PING, b"p")
                   + frame(OP_BINARY, INVALID_DEFLATE[name], rsv=4))
        c.expect_msg(OP_TEXT, b"fine")
        c.expect_pong(b"p")
        c.expect_close_code(1007)


def test_distance_before_start_1007(ws):
    """A back-reference to before the first byte of the message."""
    block = random.Random(14).randbytes(500)
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    z.compress(block)
    z.flush(zlib.Z_SYNC_FLUSH)
    refers = z.compress(block) + z.flush(zlib.Z_SYNC_FLUSH)
    with Conn(ws.port, "/echo", extensions=PMD) as c:
        c.send_frame(OP_BINARY, refers[:-4], rsv=4)
        c.expect_close_code(1007)


@pytest.mark.parametrize("bad", [b"abc\xff", b"\xed\xa0\x80",
                                 b"ok\xe2\x82", b"\xc0\xaf" * 100],
                         ids=["ff", "surrogate", "truncated", "overlong"])
def test_compressed_text_invalid_utf8_1007(ws, bad):
    with Conn(ws.port, "/echo", extensions=PMD) as c:
        c.send_raw(frame(OP_BINARY, deflate_raw(bad), rsv=4)
                   + frame(OP_TEXT, deflate_raw(bad), rsv=4))
        c.expect_msg(OP_BINARY, bad)           # fine as binary
        c.expect_close_code(1007)


def test_compressed_text_invalid_utf8_fragmented_1007(ws):
    comp = deflate_raw("\u20ac".encode() * 50 + b"\xf8")
    with Conn(ws.port, "/echo", extensions=PMD) as c:
        c.send_raw(frame(OP_TEXT, comp[:4], rsv=4, fin=False)
                   + frame(OP_CONT, comp[4:]))
        c.expect_close_code(1007)


def test_compressed_text_split_sequence_valid(ws):
    """Fragments of the compressed stream cut anywhere: text valid once
    inflated is echoed, however the inflated bytes fall."""
    data = "\U0001f600\u20ac\u00e9".encode() * 300
    comp = deflate_raw(data, level=0)           # stored: bytes stay in place
    with Conn(ws.port, "/echo", extensions=PMD) as c:
        for cut in (1, 7, 8, 9, len(comp) // 2, len(comp) - 1):
            c.send_raw(frame(OP_TEXT, comp[:cut], rsv=4, fin=False)
                       + frame(OP_CONT, comp[cut:]))
            c.expect_msg(OP_TEXT, data, compressed=True)
        c.finish(1000)


# ---- size limit once inflated ---------------------------------------------------------

@pytest.mark.parametrize("path", ["/echo1m", "/ctx1m"])
def test_inflated_limit_exact(ws, path):
    zeros = b"\x00" * SMALL_LIMIT
    with Conn(ws.port, path, extensions=PMD, timeout=30) as c:
        z = Deflater(takeover=c.pmd is not None and not c.pmd.client_nct)
        comp = z.compress(zeros)
        assert len(comp) < 5000
        c.send_frame(OP_BINARY, comp, rsv=4)
        c.expect_msg(OP_BINARY, zeros, compressed=True, timeout=30)
        c.send_raw(frame(OP_PING, b"p")
                   + frame(OP_BINARY, z.compress(zeros + b"\x00"), rsv=4))
        c.expect_pong(b"p")
        c.expect_close_code(1009)


@pytest.mark.parametrize("size", [4 * MiB, 64 * MiB])
def test_compression_bomb_1009(ws, size):
    comp = deflate_raw(b"\x00" * size, level=9)
    assert len(comp) < 70000
    with Conn(ws.port, "/echo1m", extensions=PMD) as c:
        c.send_frame(OP_TEXT, comp, rsv=4)
        c.expect_close_code(1009)


def test_compression_bomb_fragmented_1009(ws):
    comp = deflate_raw(b"a" * (3 * MiB), level=9)
    with Conn(ws.port, "/echo1m", extensions=PMD) as c:
        frags = [comp[i:i + 100] for i in range(0, len(comp), 100)]
        c.send_raw(b"".join(
            frame(OP_BINARY if i == 0 else OP_CONT, p,
                  fin=(i == len(frags) - 1), rsv=4 if i == 0 else 0)
            for i, p in enumerate(frags)))
        c.expect_close_code(1009)


def test_default_limit_inflated(ws):
    """16 MiB once inflated is fine, one byte more is 1009."""
    data = b"\x00" * DEFAULT_LIMIT
    with Conn(ws.port, "/echo", extensions=PMD, timeout=60) as c:
        c.send_frame(OP_BINARY, deflate_raw(data, level=9), rsv=4)
        c.expect_msg(OP_BINARY, data, compressed=True, timeout=60)
        c.send_frame(OP_BINARY, deflate_raw(data + b"\x00", level=9), rsv=4)
        c.expect_close_code(1009, timeout=30)


# ---- combinations and odd deliveries ---------------------------------------------

def test_context_takeover_with_small_windows(ws):
    """/ctx9: both contexts kept, both windows 9 bits.  The server's
    echoes may refer to earlier messages, but never more than 512 bytes
    back (checked by the strict inflate); the client does the same."""
    with Conn(ws.port, "/ctx9",
              extensions=PMD + "; client_max_window_bits") as c:
        assert agreed(c) == {SMWB: "9", CMWB: "9"}, c.ext_header
        rnd = random.Random(21)
        z = Deflater(bits=9, takeover=True)
        small = rnd.randbytes(100)
        sizes = []
        for i in range(6):
            msg = small + rnd.randbytes(2000) + small + b"%d" % i
            c.send_frame(OP_BINARY, z.compress(msg), rsv=4)
            sizes.append(len(c.expect_msg(OP_BINARY, msg,
                                          compressed=True).wire))
        # Repeating the end of the previous message: a reference about
        # 100 bytes back into it (zlib reaches at most 250 bytes back
        # with a 512-byte window), which a kept context allows.
        c.send_frame(OP_BINARY, z.compress(small), rsv=4)
        m = c.expect_msg(OP_BINARY, small, compressed=True)
        assert len(m.wire) < 50
        c.finish(1000)


def test_client_window_8_huffman_only(ws):
    with Conn(ws.port, "/cbits8",
              extensions=PMD + "; client_max_window_bits") as c:
        assert agreed(c) == with_(cmwb=8)
        z = Deflater(bits=8)
        for data in [b"", b"a" * 1000, os.urandom(5000)]:
            c.send_frame(OP_BINARY, z.compress(data), rsv=4)
            c.expect_msg(OP_BINARY, data, compressed=len(data) >= 64)
        c.finish(1000)


def test_compressed_frames_in_one_byte_writes(ws):
    data = "\u20ac uno dos tres ".encode() * 20
    comp = deflate_raw(data)
    raw = (frame(OP_TEXT, comp[:5], rsv=4, fin=False)
           + frame(OP_PING, b"p")
           + frame(OP_CONT, comp[5:])
           + frame(OP_BINARY, deflate_raw(b"\xff" * 100), rsv=4))
    with Conn(ws.port, "/echo", extensions=PMD) as c:
        c.send_chopped(raw, [1], pause=0.0005)
        c.expect_pong(b"p")
        c.expect_msg(OP_TEXT, data, compressed=True)
        c.expect_msg(OP_BINARY, b"\xff" * 100, compressed=True)
        c.finish(1000)


@pytest.mark.parametrize("level", [0, 6])
def test_incompressible_message_at_limit(ws, level):
    """1 MiB of random bytes compresses to a little more than 1 MiB: the
    limit is on the message, so it is accepted."""
    data = random.Random(level).randbytes(SMALL_LIMIT)
    comp = deflate_raw(data, level=level)
    assert len(comp) > SMALL_LIMIT
    with Conn(ws.port, "/echo1m", extensions=PMD, timeout=30) as c:
        c.send_frame(OP_BINARY, comp, rsv=4)
        c.expect_msg(OP_BINARY, data, compressed=True, timeout=30)
        c.send_frame(OP_BINARY, deflate_raw(data + b"!", level=level),
                     rsv=4)
        c.expect_close_code(1009)
