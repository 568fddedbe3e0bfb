"""The closing handshake: codes echoed, invalid codes refused, server-
initiated closes and their timeout."""

import select
import struct
import time

import pytest

from wsraw import WSClient, OP_CLOSE, OP_TEXT


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1007, 1011, 1014, 3000,
                                  4999])
def test_client_close_code_echoed(srv, code):
    with WSClient(srv.port, "/echo") as c:
        f = c.close_handshake(code)
        assert f.close_code == code


def test_client_close_with_reason(srv):
    with WSClient(srv.port, "/echo") as c:
        c.send_close(1000, "bye \u2013 now".encode())
        f = c.expect_close(1000)
        assert f.close_code == 1000


def test_empty_client_close_gets_empty_close(srv):
    with WSClient(srv.port, "/echo") as c:
        c.send_close(None)
        c.expect_close(empty=True)


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2000,
                                  2999, 5000, 65535])
def test_invalid_close_code_1002(srv, code):
    with WSClient(srv.port, "/echo") as c:
        c.send_close(code)
        c.expect_close(1002)


@pytest.mark.parametrize("code", [1004, 1016, 2000, 2999])
def test_reserved_codes_allowed_when_configured(srv, code):
    with WSClient(srv.port, "/probe/reserved") as c:
        f = c.close_handshake(code)
        assert f.close_code == code


@pytest.mark.parametrize("code", [1005, 1006, 1015, 999, 5000])
def test_never_valid_codes_even_with_reserved_on(srv, code):
    with WSClient(srv.port, "/probe/reserved") as c:
        c.send_close(code)
        c.expect_close(1002)


def test_close_payload_of_one_byte_1002(srv):
    with WSClient(srv.port, "/echo") as c:
        c.send_frame(OP_CLOSE, b"\x03")
        c.expect_close(1002)


def test_close_reason_invalid_utf8_1007(srv):
    with WSClient(srv.port, "/echo") as c:
        c.send_frame(OP_CLOSE, struct.pack("!H", 1000) + b"bad \xff\xfe")
        c.expect_close(1007)


def test_plugin_close_sends_empty_close(srv):
    """server->close(): a Close without status code; after the client's
    reply the server closes TCP."""
    with WSClient(srv.port, "/probe") as c:
        c.send_text("close")
        f = c.recv_frame()
        assert f.opcode == OP_CLOSE and f.payload == b""
        c.send_close(1000)
        c.expect_eof(5)


def test_plugin_close_from_other_thread(srv):
    with WSClient(srv.port, "/probe") as c:
        c.send_text("threadclose")
        f = c.recv_frame(timeout=5)
        assert f.opcode == OP_CLOSE and f.payload == b""
        c.send_close(None)
        c.expect_eof(5)


def test_data_after_server_close_not_delivered(srv):
    """Once the server sent its Close, a client data frame is not echoed."""
    with WSClient(srv.port, "/probe") as c:
        c.send_text("close")
        f = c.recv_frame()
        assert f.opcode == OP_CLOSE
        c.send_text("too late")
        c.send_close(1000)
        c.expect_eof(5)


def test_close_timeout_without_reply(srv):
    """WebSocketCloseTimeout 700ms: a client that never answers the Close
    is dropped after 0.7 s."""
    with WSClient(srv.port, "/probe/closetimeout") as c:
        c.send_text("close")
        f = c.recv_frame()
        assert f.opcode == OP_CLOSE
        t0 = time.monotonic()
        c.expect_eof(10)
        elapsed = time.monotonic() - t0
        assert 0.5 <= elapsed <= 2.5, elapsed


def test_default_close_timeout_waits(srv):
    """The default (5 s) lets a slow client reply after 1.5 s: the server
    keeps the connection for those 1.5 s, and the reply is what ends it
    (at once, not at the timeout)."""
    with WSClient(srv.port, "/probe") as c:
        c.send_text("close")
        assert c.recv_frame().opcode == OP_CLOSE
        ready = select.select([c.sock], [], [], 1.5)[0]
        assert not ready, "the server ended the connection within 1.5 s: " \
            "%r" % c.sock.recv(100)
        c.send_close(1000)
        t0 = time.monotonic()
        c.expect_eof(3)
        assert time.monotonic() - t0 < 1, "TCP ended %.1fs after the " \
            "reply" % (time.monotonic() - t0)


def test_error_close_then_client_silent_connection_ends(srv):
    """After a protocol error Close the server closes TCP even though the
    client does not answer."""
    with WSClient(srv.port, "/probe/closetimeout") as c:
        c.send_frame(OP_TEXT, b"x", mask=False)
        c.expect_close(1002, timeout=10)
