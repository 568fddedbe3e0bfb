"""Data framing on raw sockets: echo, fragmentation, control frames,
protocol errors with their exact close codes."""

import os
import random
import socket
import struct
import time

import pytest

import wsraw
from wsraw import (WSClient, build_frame, OP_CONT, OP_TEXT, OP_BINARY,
                   OP_CLOSE, OP_PING, OP_PONG)


@pytest.fixture
def echo(srv):
    c = WSClient(srv.port, "/echo")
    yield c
    c.close()


# ---- echo -------------------------------------------------------------------

@pytest.mark.parametrize("n", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_binary_echo_length_encodings(echo, n):
    data = os.urandom(n)
    echo.send_binary(data)
    f = echo.recv_frame()
    assert (f.opcode, f.fin) == (OP_BINARY, True)
    assert f.payload == data
    # Minimal length encoding (recv_frame also rejects non-minimal ones).
    assert f.header_len == (2 if n < 126 else 4 if n < 65536 else 10)
    echo.close_handshake(1000)


def test_text_echo_utf8(echo):
    text = "h\u00e9llo \u20ac \U0001d11e \u4e2d\u6587"
    echo.send_text(text)
    assert echo.recv_message() == (OP_TEXT, text.encode("utf-8"))
    echo.send_text("")
    assert echo.recv_message() == (OP_TEXT, b"")
    echo.close_handshake(1000)


def test_many_messages_in_one_write(echo):
    msgs = [("m%d" % i).encode() * (i + 1) for i in range(50)]
    echo.send_raw(b"".join(build_frame(OP_TEXT, m) for m in msgs))
    for m in msgs:
        assert echo.recv_message() == (OP_TEXT, m)
    echo.close_handshake(1000)


def test_frame_split_byte_by_byte(echo):
    raw = build_frame(OP_TEXT, b"dribbled" * 40)
    for i in range(len(raw)):
        echo.send_raw(raw[i:i + 1])
        if i < 12:
            time.sleep(0.01)
    assert echo.recv_message() == (OP_TEXT, b"dribbled" * 40)
    echo.close_handshake(1000)


def test_fragmented_text(echo):
    echo.send_frame(OP_TEXT, b"Hel", fin=False)
    echo.send_frame(OP_CONT, b"", fin=False)
    echo.send_frame(OP_CONT, b"lo, ", fin=False)
    echo.send_frame(OP_CONT, b"world", fin=True)
    assert echo.recv_message() == (OP_TEXT, b"Hello, world")
    echo.close_handshake(1000)


def test_utf8_sequence_split_across_fragments(echo):
    data = "\u20ac\U0001d11e".encode()          # e2 82 ac f0 9d 84 9e
    echo.send_frame(OP_TEXT, data[:1], fin=False)
    echo.send_frame(OP_CONT, data[1:5], fin=False)
    echo.send_frame(OP_CONT, data[5:], fin=True)
    assert echo.recv_message() == (OP_TEXT, data)
    echo.close_handshake(1000)


def test_ping_interleaved_in_fragmented_message(echo):
    echo.send_frame(OP_BINARY, b"a" * 10, fin=False)
    echo.send_frame(OP_PING, b"mid")
    echo.send_frame(OP_CONT, b"b" * 10, fin=True)
    f = echo.recv_frame()
    assert (f.opcode, f.payload) == (OP_PONG, b"mid")
    assert echo.recv_message() == (OP_BINARY, b"a" * 10 + b"b" * 10)
    echo.close_handshake(1000)


@pytest.mark.parametrize("payload", [b"", b"ping!", bytes(range(125))],
                         ids=["empty", "short", "125"])
def test_ping_gets_pong_with_same_payload(echo, payload):
    echo.send_frame(OP_PING, payload)
    f = echo.recv_frame()
    assert f.opcode == OP_PONG and f.fin
    assert f.payload == payload
    echo.close_handshake(1000)


def test_unsolicited_pong_ignored(echo):
    echo.send_frame(OP_PONG, b"unasked")
    echo.send_text("after pong")
    f = echo.recv_frame()
    assert (f.opcode, f.payload) == (OP_TEXT, b"after pong")
    echo.close_handshake(1000)


@pytest.mark.parametrize("size", [1 << 20, 4 << 20], ids=["1MiB", "4MiB"])
def test_large_message_echo(echo, size):
    data = os.urandom(size)
    echo.send_binary(data)
    assert echo.recv_message(timeout=30) == (OP_BINARY, data)
    echo.close_handshake(1000)


@pytest.mark.parametrize("frag", [1000, 4096, 65536, "random"])
def test_large_fragmented_with_pings(echo, frag):
    rnd = random.Random(frag if frag != "random" else 7)
    data = bytes(rnd.getrandbits(8) for _ in range(4096)) * 256   # 1 MiB
    pings = []
    if frag == "random":
        pos, first = 0, True
        while pos < len(data):
            n = rnd.choice([0, 1, 7, 125, 126, 3000, 65535, 65536, 100000])
            chunk = data[pos:pos + n]
            pos += len(chunk)
            echo.send_frame(OP_BINARY if first else OP_CONT, chunk,
                            fin=pos >= len(data))
            first = False
            if pos < len(data) and rnd.random() < 0.3:
                p = b"p%d" % pos
                pings.append(p)
                echo.send_frame(OP_PING, p)
    else:
        def between(i):
            if i % 50 == 0:
                p = b"p%d" % i
                pings.append(p)
                echo.send_frame(OP_PING, p)
        echo.send_fragmented(OP_BINARY, data, frag, between)
    pongs = []
    assert echo.recv_message(timeout=30, pongs=pongs) == (OP_BINARY, data)
    assert pongs == pings
    echo.close_handshake(1000)


def test_concurrent_clients(srv):
    clients = [WSClient(srv.port, "/echo") for _ in range(12)]
    try:
        for i, c in enumerate(clients):
            c.send_text("client %d" % i)
        for i, c in reversed(list(enumerate(clients))):
            assert c.recv_message() == (OP_TEXT, b"client %d" % i)
        for c in clients:
            c.close_handshake(1000)
    finally:
        for c in clients:
            c.close()


# ---- protocol errors --------------------------------------------------------

def expect_error(c, code, timeout=5):
    return c.expect_close(code, timeout=timeout)


def test_unmasked_frame_1002(echo):
    echo.send_frame(OP_TEXT, b"naked", mask=False)
    expect_error(echo, 1002)


@pytest.mark.parametrize("rsv", [1, 2, 4])
def test_reserved_bits_1002(echo, rsv):
    echo.send_frame(OP_TEXT, b"rsv", rsv=rsv)
    expect_error(echo, 1002)


@pytest.mark.parametrize("opcode", [0x3, 0x7, 0xB, 0xF])
def test_reserved_opcode_1002(echo, opcode):
    echo.send_frame(opcode, b"what")
    expect_error(echo, 1002)


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_control_frame_too_long_1002(echo, opcode):
    payload = struct.pack("!H", 1000) + b"x" * 124 if opcode == OP_CLOSE \
        else b"x" * 126
    echo.send_frame(opcode, payload)
    expect_error(echo, 1002)


@pytest.mark.parametrize("opcode", [OP_PING, OP_CLOSE])
def test_fragmented_control_1002(echo, opcode):
    echo.send_frame(opcode, b"", fin=False)
    expect_error(echo, 1002)


def test_continuation_without_start_1002(echo):
    echo.send_frame(OP_CONT, b"orphan", fin=True)
    expect_error(echo, 1002)


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_new_data_frame_inside_fragmented_message_1002(echo, opcode):
    echo.send_frame(OP_TEXT, b"start", fin=False)
    echo.send_frame(opcode, b"again", fin=True)
    expect_error(echo, 1002)


@pytest.mark.parametrize("bad", [
    b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
    b"abc\xe2\x82", b"\x80abc", b"\xf8\x88\x80\x80\x80"],
    ids=["ff", "overlong-nul", "surrogate", "above-10ffff", "truncated",
         "lone-continuation", "5-byte"])
def test_invalid_utf8_text_1007(echo, bad):
    echo.send_text(bad)
    expect_error(echo, 1007)


def test_invalid_utf8_across_fragments_1007(echo):
    echo.send_frame(OP_TEXT, b"ok \xe2\x82", fin=False)
    echo.send_frame(OP_CONT, b"\x28 bad", fin=True)
    expect_error(echo, 1007)


def test_truncated_utf8_at_message_end_1007(echo):
    echo.send_frame(OP_TEXT, b"fine", fin=False)
    echo.send_frame(OP_CONT, b"\xf0\x9d\x84", fin=True)
    expect_error(echo, 1007)


def test_invalid_utf8_fails_fast(echo):
    """The Close comes before the rest of the message is sent."""
    echo.send_frame(OP_TEXT, b"start \xc3\x28", fin=False)
    t0 = time.monotonic()
    expect_error(echo, 1007, timeout=3)
    assert time.monotonic() - t0 < 3


def test_invalid_utf8_fails_fast_inside_one_frame(echo):
    """Only the head of a big frame is sent: the bad bytes are enough."""
    raw = build_frame(OP_TEXT, b"\xff" + b"a" * 99999)
    echo.send_raw(raw[:4096])
    expect_error(echo, 1007, timeout=3)


def test_valid_message_before_error_processed(echo):
    echo.send_raw(build_frame(OP_TEXT, b"first")
                  + build_frame(OP_TEXT, b"x", mask=False))
    assert echo.recv_message() == (OP_TEXT, b"first")
    expect_error(echo, 1002)


def test_ping_before_error_answered(echo):
    echo.send_raw(build_frame(OP_PING, b"pp")
                  + build_frame(0x5, b""))
    f = echo.recv_frame()
    assert (f.opcode, f.payload) == (OP_PONG, b"pp")
    expect_error(echo, 1002)


def test_nothing_after_close_is_processed(echo):
    echo.send_raw(build_frame(OP_CLOSE, wsraw.close_payload(1000))
                  + build_frame(OP_TEXT, b"after close"))
    echo.expect_close(1000)


# ---- message size limit -----------------------------------------------------

def test_max_size_boundary(srv):
    with WSClient(srv.port, "/probe/small") as c:
        c.send_binary(b"m" * 1000)
        assert c.recv_message() == (OP_BINARY, b"m" * 1000)
        c.send_binary(b"m" * 1001)
        c.expect_close(1009)


def test_max_size_fragmented_total(srv):
    with WSClient(srv.port, "/probe/small") as c:
        c.send_fragmented(OP_TEXT, b"f" * 1000, 100)
        assert c.recv_message() == (OP_TEXT, b"f" * 1000)
        c.send_fragmented(OP_TEXT, b"f" * 1200, 300)
        c.expect_close(1009)


def test_max_size_fails_on_header(srv):
    """A frame announcing more than the limit is refused at once."""
    with WSClient(srv.port, "/probe/small") as c:
        c.send_raw(build_frame(OP_BINARY, b"", length=10 << 20)[:14])
        c.expect_close(1009, timeout=3)


def test_default_limit_is_16mib(srv):
    with WSClient(srv.port, "/echo") as c:
        c.send_raw(build_frame(OP_BINARY, b"", length=(16 << 20) + 1)[:14])
        c.expect_close(1009, timeout=3)


def test_max_size_with_k_suffix(srv):
    with WSClient(srv.port, "/probe/onek") as c:
        c.send_binary(b"k" * 1024)
        assert c.recv_message() == (OP_BINARY, b"k" * 1024)
        c.send_binary(b"k" * 1025)
        c.expect_close(1009)


def test_nested_location_merges_settings(srv):
    """/probe/small/deeper: handler from /probe, limit from /probe/small,
    its own WebSocketOriginCheck Off."""
    with WSClient(srv.port, "/probe/small/deeper",
                  origin="http://evil.example") as c:
        c.send_text("info")
        assert '"uri":"/probe/small/deeper"' in c.recv_text()
        c.send_binary(b"d" * 1001)
        c.expect_close(1009)


def test_protocol_error_logged_with_code(srv):
    mark = srv.mark()
    with WSClient(srv.port, "/echo?errlog") as c:
        c.send_frame(OP_TEXT, b"x", mask=False)
        c.expect_close(1002)
    # The access log line comes when httpd is done with the connection.
    srv.expect_log('"GET /echo?errlog HTTP/1.1" 101 ', mark, "access")
    text = srv.since(mark)
    lines = [l for l in text.splitlines() if "[websocket:" in l]
    assert len(lines) == 1 and "1002" in lines[0], text


def test_limit_is_per_location(srv):
    with WSClient(srv.port, "/probe") as c:
        c.send_binary(b"m" * 5000)
        assert c.recv_message() == (OP_BINARY, b"m" * 5000)
        c.close_handshake(1000)


# ---- abrupt ends ------------------------------------------------------------

def test_tcp_abort_mid_frame_server_survives(srv):
    c = WSClient(srv.port, "/echo")
    c.send_raw(build_frame(OP_BINARY, b"z" * 1000)[:300])
    c.abort()
    c = WSClient(srv.port, "/echo")
    c.send_text("alive")
    assert c.recv_message() == (OP_TEXT, b"alive")
    c.close_handshake(1000)
    c.close()


def test_half_closed_client_gets_close(echo):
    """The client shuts down its sending side: the server ends the
    connection (it may send a Close first)."""
    echo.sock.shutdown(socket.SHUT_WR)
    echo.settimeout(5)
    while True:
        try:
            f = echo.recv_frame()
        except EOFError:
            break
        assert f.opcode == OP_CLOSE, f
