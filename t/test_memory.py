"""Memory that stays bounded: WebSocketSendQueueLimit bounds all the output
one connection holds (queued or taken by the engine), WebSocketMemoryLimit
all the WebSocket buffers of a child."""

import os
import re

import pytest

import harness
from conftest import ws_location
from wsraw import WSClient, open_many, wait_until

ONE_CHILD = harness.ONE_CHILD

MIB = 1024 * 1024


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def child_rss(h):
    kids = h.children()
    assert len(kids) == 1, kids
    return rss_kib(kids[0])


def memory_conf(limit, queue="16M"):
    def conf(h):
        # A small kernel send buffer: what a non-reading client is sent
        # stays in the module's buffers, where it is counted.
        return ("SendBufferSize 4096\nWebSocketMemoryLimit %s\n" % limit
                + ws_location("/probe", harness.test_plugin_so("probe"),
                              "probe_init",
                              "    WebSocketSendQueueLimit %s\n" % queue))
    return conf


def queued(h, mark, cid):
    log = h.wait_log(lambda t: "queue id=%s " % cid in t, mark, "test",
                     timeout=10)
    m = re.search(r"queue id=%s accepted=(\d+)" % cid, log)
    return int(m.group(1))


@pytest.mark.noasan
def test_two_hundred_slow_readers_stay_under_the_ceiling(make_httpd):
    """200 clients that never read, each asked to take 4 MiB: the child's
    RSS grows by at most the ceiling (32 MiB) plus a constant, the
    connections holding the most are closed with 1013, and the log says
    so once per episode, not per connection.  (noasan: RSS under ASan
    measures its quarantine, not us.)"""
    h = make_httpd(memory_conf("32M"), mpm_conf=ONE_CHILD,
                   loglevel="warn websocket:info")
    h.start()
    idle = open_many(h.port, "/probe", n=10)
    base = child_rss(h)
    mark = h.mark()
    clients = open_many(h.port, "/probe", n=200, rcvbuf=4096,
                        headers=[("X-Conn-Id", "slow")])
    try:
        peak = 0
        for c in clients:
            c.send_text("queue:65536:64")
        assert wait_until(lambda: h.since(mark, "test").count("queue id=slow ")
                          >= 200, timeout=30)
        peak = max(peak, child_rss(h))
        grown = (peak - base) / 1024.0
        assert grown < 32 + 24, "child grew by %.1f MiB (ceiling 32)" % grown
        text = h.since(mark)
        shed = text.count("with 1013: it held the most")
        assert shed >= 150, "only %d connections were shed" % shed
        episodes = text.count("over WebSocketMemoryLimit")
        assert 1 <= episodes <= 10, text[-2000:]
        # The idle ones were never touched and still answer.
        for c in idle[:3]:
            c.send_text("alive")
            assert c.recv_text(timeout=5) == "alive"
    finally:
        for c in clients + idle:
            c.close()


def test_ceiling_refuses_handshakes_then_sheds_the_largest(make_httpd):
    """Near the ceiling (above nine tenths) a handshake is answered 503
    with Retry-After; past it, the connection holding the most is closed
    with 1013 (its queue dropped: the Close comes right after what the
    kernel already had), and handshakes work again."""
    h = make_httpd(memory_conf("8M"), mpm_conf=ONE_CHILD,
                   loglevel="warn websocket:info")
    h.start()
    mark = h.mark()
    big = WSClient(h.port, "/probe", rcvbuf=4096, headers=[("X-Conn-Id", "big")])
    small = WSClient(h.port, "/probe", rcvbuf=4096,
                     headers=[("X-Conn-Id", "small")])
    try:
        big.send_text("queue:262144:30")          # 7.5 MiB: 94%
        assert queued(h, mark, "big") == 30
        refused = WSClient(h.port, "/probe", expect_status=503)
        assert refused.response.header("Retry-After") == "5"
        refused.close()
        small.send_text("queue:262144:4")         # past 8 MiB
        assert queued(h, mark, "small") >= 1
        text = h.wait_log(lambda t: "it held the most" in t, mark)
        assert "over WebSocketMemoryLimit" in text
        big.settimeout(10)
        big.expect_close(1013, timeout=10, allow_data=True)
        ok = WSClient(h.port, "/probe")
        ok.send_text("again")
        assert ok.recv_text(timeout=5) == "again"
        ok.close_handshake(1000)
    finally:
        big.close()
        small.close()


def test_queue_limit_counts_what_the_engine_holds(make_httpd):
    """Before, a slow reader held about twice WebSocketSendQueueLimit: the
    queue, plus the frames the engine had taken.  Now the engine's count
    too: with a 1 MiB limit and nothing written (tiny kernel buffers),
    1 MiB is all that is accepted, however the sends are spread over
    time."""
    h = make_httpd(memory_conf("Off", queue="1M"), mpm_conf=ONE_CHILD)
    h.start()
    mark = h.mark()
    c = WSClient(h.port, "/probe", rcvbuf=4096, headers=[("X-Conn-Id", "q")])
    try:
        c.send_text("queue:65536:15")             # 960 KiB: fits
        assert queued(h, mark, "q") == 15
        # The engine has taken them by now (it wrote a few KiB); before,
        # the queue was empty again and 15 more were accepted.
        assert wait_until(lambda: "queue id=q " in h.since(mark, "test"))
        mark2 = h.mark()
        c.send_text("queue:65536:15")
        second = queued(h, mark2, "q")
        assert second <= 2, "%d more accepted: the engine's frames were " \
            "not counted" % second
    finally:
        c.close()
