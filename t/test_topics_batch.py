"""Topics' delivery in runs: when publishes come faster than a child's
reader delivers them, the messages of one topic that reached the child
together go to each subscriber as one frame of all of them (one node, one
write).  What must hold: every subscriber still gets every message, whole
and in order, in its own form (plain, with ids, compressed for all or for
itself), never one it sent itself; a slow subscriber holds nobody back and
loses nothing silently; and the shared frames are freed once written."""

import re
import socket
import time

import pytest

import harness
from conftest import ws_location
from conformance_lib import Conn
from wsraw import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, wait_until

V2 = harness.test_plugin_so("v2probe")
COUNT = 400
ONE_CHILD = harness.ONE_CHILD


def batch_conf(h):
    return (ws_location("/v2", V2, "v2probe_init",
                        "    WebSocketCompressionMinSize 100\n")
            + ws_location("/v2drop", V2, "v2probe_init",
                          "    WebSocketSendQueueLimit 64K\n"
                          "    WebSocketTopicOverflow Drop\n")
            + ws_location("/v2slow", V2, "v2probe_init",
                          "    WebSocketSendQueueLimit 64K\n")
            + ws_location("/v2life", V2, "v2probe_init",
                          "    WebSocketPingInterval 1\n"
                          "    WebSocketMaxLifetime 4\n"))


@pytest.fixture(scope="module")
def bsrv():
    from conftest import serve
    # One child: every subscriber is behind the same reader.  Small
    # kernel buffers: what a slow subscriber is sent stays queued in the
    # module, where its limit applies.
    yield from serve(lambda h: "SendBufferSize 4096\n" + batch_conf(h),
                     loglevel="warn websocket:trace2", mpm_conf=ONE_CHILD)


def conn(h, cid, path="/v2", **kw):
    return Conn(h.port, path, headers=[("X-Conn-Id", cid)], **kw)


def subscribe(h, c, cid, topic, extra=""):
    mark = h.mark()
    c.send_text("sub:%s%s" % (topic, extra))
    text = h.expect_log(lambda t: re.search(
        r"^v2 sub %s %s rc=" % (cid, re.escape(topic)), t, re.M), mark, "test")
    assert re.search(r"^v2 sub %s %s rc=0" % (cid, re.escape(topic)), text,
                     re.M), text


def expected(i, size, vary=True):
    """What publish_many (t/plugins/v2probe.c) sends as message i."""
    head = "%d " % i
    want = i * 37 % size if vary else size
    return head + chr(ord("a") + i % 26) * max(0, want - len(head))


def take_texts(c, n):
    out = []
    for _ in range(n):
        m = c.recv_msg(timeout=10)
        assert m.opcode == OP_TEXT, m
        out.append(m.data.decode("utf-8"))
    return out


def publish_many(h, pub, cid, topic, count, size, exclude=False):
    mark = h.mark()
    pub.send_text("pub%sn:%s:%d:%s" % ("x" if exclude else "", topic, count,
                                      size))
    h.expect_log("v2 pubn %s %s ok=%d" % (cid, topic, count), mark, "test",
                 timeout=10)
    return mark


def test_runs_arrive_whole_and_in_order_in_every_form(bsrv):
    """Plain subscribers, one with ids, one compressing without context
    takeover (the shared compressed form), one with it (compressed for
    itself), and the publisher subscribed but excluded: all get the 400
    messages in order, none twice, none garbled, though they went out in
    runs (the trace line says so)."""
    plain = [conn(bsrv, "bp%d" % i) for i in range(3)]
    ids = conn(bsrv, "bi")
    snct = conn(bsrv, "bs", extensions="permessage-deflate; "
                "server_no_context_takeover")
    own = conn(bsrv, "bo", extensions="permessage-deflate")
    pub = conn(bsrv, "bpub")
    everyone = plain + [ids, snct, own, pub]
    try:
        assert snct.pmd and own.pmd
        for i, c in enumerate(plain):
            subscribe(bsrv, c, "bp%d" % i, "runs")
        subscribe(bsrv, ids, "bi", "runs", ":ids")
        subscribe(bsrv, snct, "bs", "runs")
        subscribe(bsrv, own, "bo", "runs")
        subscribe(bsrv, pub, "bpub", "runs")
        mark = publish_many(bsrv, pub, "bpub", "runs", COUNT, "300v",
                            exclude=True)
        want = [expected(i, 300) for i in range(COUNT)]
        for c in plain + [own]:
            assert take_texts(c, COUNT) == want
        got = [snct.recv_msg(timeout=10) for _ in range(COUNT)]
        assert [m.data.decode() for m in got] == want
        assert any(m.compressed for m in got)          # the shared form
        assert not all(m.compressed for m in got)      # under the minimum
        seqs = []
        for text, w in zip(take_texts(ids, COUNT), want):
            head, _, payload = text.partition("\n\n")
            assert payload == w and "gap" not in head, head
            seqs.append(int(re.search(r"^id: \w+-(\d+)$", head,
                                      re.M).group(1)))
        assert seqs == list(range(seqs[0], seqs[0] + COUNT))
        # The publisher got none of its own: its first message is a fence.
        pub.send_text("fence")
        assert pub.recv_msg(timeout=5).data == b"fence"
        text = bsrv.expect_log(lambda t: re.search(
            r"topic runs: a run of ([2-9]|\d\d+) messages", t), mark)
        assert "to 7 subscribers" in text
    finally:
        for c in everyone:
            c.close()


def drain_with_lasts(drop, pub, topic):
    """Every message queued for drop, up to a numbered "last" published
    after them.  The child's reader may still be delivering (and
    dropping) the last publishes when a Pong says all that was queued
    before it was read: so each Pong is followed by one more "last" and a
    Ping, until a "last" arrives (its gap counts the earlier ones it
    missed).  Returns the numbers got, the gaps' sum and that last's k."""
    got, missed, lasts = [], 0, 0
    drop.send_frame(OP_PING, b"fence")
    while True:
        f = drop.recv_frame(timeout=10)
        if f.opcode == OP_PONG:
            lasts += 1
            pub.send_text("pub:%s:last:%d" % (topic, lasts))
            drop.send_frame(OP_PING, b"fence")
            continue
        head, _, payload = f.payload.decode().partition("\n\n")
        m = re.search(r"^gap: (\d+)$", head, re.M)
        missed += int(m.group(1)) if m else 0
        if payload.startswith("last:"):
            k = int(payload.split(":")[1])
            assert 1 <= k <= lasts
            return got, missed, k
        got.append(int(payload.split(" ")[0]))


def test_slow_subscribers_hold_nobody_back_and_lose_nothing_silently(bsrv):
    """A subscriber that does not read (Drop) and one that is closed when
    full (Close) share the runs with a fast one: the fast one gets all,
    the Close one gets 1013, and the Drop one's messages plus the gaps it
    is told of add up to every message."""
    fast = conn(bsrv, "sf")
    drop = conn(bsrv, "sd", path="/v2drop", rcvbuf=4096)
    slow = conn(bsrv, "ss", path="/v2slow", rcvbuf=4096)
    pub = conn(bsrv, "sp")
    try:
        subscribe(bsrv, fast, "sf", "slowrun")
        subscribe(bsrv, drop, "sd", "slowrun", ":ids")
        subscribe(bsrv, slow, "ss", "slowrun")
        mark = publish_many(bsrv, pub, "sp", "slowrun", 300, "4000")
        want = [expected(i, 4000, vary=False) for i in range(300)]
        assert take_texts(fast, 300) == want
        bsrv.expect_log("too slow for topic slowrun", mark)
        slow.settimeout(10)
        slow.expect_close(1013, timeout=10, allow_data=True, reply=True)
        got, missed, k = drain_with_lasts(drop, pub, "slowrun")
        assert got == sorted(got) and len(got) < 300, got
        assert missed >= 1 and len(got) + missed == 300 + k - 1, (
            len(got), missed, k)
    finally:
        for c in (fast, drop, slow, pub):
            c.close()


def anon_kb(pid):
    """The child's own memory (not the ring it shares)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


@pytest.mark.noasan
def test_shared_frames_are_freed_once_written(bsrv):
    """Regression: the loop freed a written topic frame's node but not the
    frame it shared with the other subscribers, so every topic message
    stayed in the child's memory for good.  Each round of 32 messages of
    256 KB read by a subscriber would keep 8 MB: three rounds after the
    first, 24 MB.  What malloc keeps or has not yet given back moves the
    child's size by a few MB either way (up to 8 MB for a moment), so the
    bound is 12 MB, waited for.  (noasan: ASan's quarantine holds freed
    memory, so RSS says nothing.)"""
    sub = conn(bsrv, "ms")
    pub = conn(bsrv, "mp")
    try:
        subscribe(bsrv, sub, "ms", "mem")
        sub.send_text("info")
        pid = int(re.search(r"pid=(\d+)", sub.recv_msg(timeout=5).data
                            .decode()).group(1))
        size = 256 * 1024
        for r in range(4):                   # rounds after the first count
            if r == 1:
                before = anon_kb(pid)
            publish_many(bsrv, pub, "mp", "mem", 32, str(size))
            for i in range(32):
                m = sub.recv_msg(timeout=10)
                assert len(m.data) == size and m.data.startswith(b"%d " % i)
        grown = []
        assert wait_until(lambda: grown.append(anon_kb(pid) - before)
                          or grown[-1] < 12 * 1024, timeout=5), \
            "the child grew by %d KB" % grown[-1]
    finally:
        sub.close()
        pub.close()


def test_a_subscriber_that_only_receives_keeps_its_timers(bsrv):
    """A topic's subscriber is served every turn only to write what was
    queued for it, and once it is detached from Apache's pools such a
    service leaves its timer as it was (no deadline computed, no timer
    set).  Its timers must still fire while messages flow and it sends
    nothing: a Ping after WebSocketPingInterval (1 s), then its end (1001)
    at WebSocketMaxLifetime (4 s), before the Ping's timeout (10 s)."""
    mark = bsrv.mark()
    start = time.monotonic()
    sub = conn(bsrv, "ls", "/v2life")
    pub = None
    try:
        subscribe(bsrv, sub, "ls", "life")
        bsrv.expect_log("detached from its pools", mark, timeout=3)
        pub = conn(bsrv, "lp")
        pings = msgs = 0
        close = None
        while close is None and time.monotonic() < start + 15:
            publish_many(bsrv, pub, "lp", "life", 20, "32")
            until = time.monotonic() + 0.2
            while close is None and time.monotonic() < until:
                try:
                    f = sub.recv_frame(timeout=max(0.01,
                                                   until - time.monotonic()))
                except socket.timeout:
                    break
                if f.opcode == OP_PING:
                    pings += 1           # unanswered: no input re-arms it
                elif f.opcode == OP_TEXT:
                    msgs += 1
                elif f.opcode == OP_CLOSE:
                    close = f
        took = time.monotonic() - start
        assert close is not None, "no Close within 15 s (lifetime 4 s)"
        assert close.close_code == 1001, close
        assert took >= 3.5, "closed after %.1f s, before its lifetime" % took
        assert msgs >= 20 and pings >= 1, (msgs, pings)
    finally:
        sub.close()
        if pub:
            pub.close()
