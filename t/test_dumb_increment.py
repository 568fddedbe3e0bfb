"""The dumb-increment example plugin: a counter sent every 50 ms from a
thread of its own."""

import time

from conftest import ws_location
from wsraw import WSClient, OP_TEXT


def counter(c, timeout=3):
    op, data = c.recv_message(timeout=timeout)
    assert op == OP_TEXT, (op, data)
    return int(data.decode())


def test_counts_from_zero_every_50ms(srv):
    with WSClient(srv.port, "/dumb-increment") as c:
        t0 = time.monotonic()
        values = [counter(c) for _ in range(20)]
        elapsed = time.monotonic() - t0
        assert values == list(range(20))
        # 19 intervals of 50 ms after the first message.
        assert 0.6 <= elapsed <= 3.0, elapsed
        c.close_handshake(1000)


def test_reset(srv):
    with WSClient(srv.port, "/dumb-increment") as c:
        assert [counter(c) for _ in range(6)] == list(range(6))
        c.send_text("reset\n")
        # Values sent before the reset was seen may still arrive, in order.
        v, last = counter(c), 5
        while v != 0:
            assert v == last + 1, (v, last)
            assert v < 12, "reset was not applied"
            last, v = v, counter(c)
        assert [counter(c) for _ in range(5)] == [1, 2, 3, 4, 5]
        c.close_handshake(1000)


def test_other_text_does_not_reset(srv):
    with WSClient(srv.port, "/dumb-increment") as c:
        assert [counter(c) for _ in range(3)] == [0, 1, 2]
        c.send_text("reset")           # no newline: not the command
        c.send_text("hello\n")
        assert [counter(c) for _ in range(6)] == [3, 4, 5, 6, 7, 8]
        c.close_handshake(1000)


def test_independent_counters(srv):
    a = WSClient(srv.port, "/dumb-increment")
    try:
        assert [counter(a) for _ in range(10)] == list(range(10))
        b = WSClient(srv.port, "/dumb-increment")
        try:
            assert counter(b) == 0
            assert counter(a) == 10          # queued, never lost
            b.send_text("reset\n")
            # a is not reset
            assert [counter(a) for _ in range(5)] == list(range(11, 16))
            b.close_handshake(1000)
        finally:
            b.close()
        a.close_handshake(1000)
    finally:
        a.close()


def test_many_clients_in_parallel(srv):
    clients = [WSClient(srv.port, "/dumb-increment") for _ in range(8)]
    try:
        for c in clients:
            assert [counter(c) for _ in range(5)] == list(range(5))
        for c in clients:
            c.close_handshake(1000)
    finally:
        for c in clients:
            c.close()


def test_abort_while_counting_then_new_client(make_httpd):
    """A client that drops TCP while the ticker sends to it: the server
    sees the end, runs on_disconnect (which takes the counter off the
    ticker's list) and then logs, at debug level, that the WebSocket of
    that client closed (ws_conn_finish); a new client counts from 0."""
    h = make_httpd(lambda h: ws_location("/dumb-increment", h.dumb_so,
                                         "dumb_increment_init"),
                   loglevel="warn websocket:debug")
    h.start()
    mark = h.mark()
    c = WSClient(h.port, "/dumb-increment")
    client = " 127.0.0.1:%d] " % c.sock.getsockname()[1]
    counter(c)
    c.abort()
    for what in ("ended without a closing handshake",
                 "WebSocket closed after"):
        h.expect_log(lambda t: any(client in line and what in line
                                   for line in t.splitlines()), mark)
    with WSClient(h.port, "/dumb-increment") as d:
        assert [counter(d) for _ in range(3)] == [0, 1, 2]
        d.close_handshake(1000)
