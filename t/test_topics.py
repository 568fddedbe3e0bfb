"""Topics through plugin API v2 (t/plugins/v2probe.c's sub:/pub:
commands): delivery in publish order, across child processes, on both
engines, excluding the sender, to subscribers with message ids and a
resume from history, and what happens to a subscriber too slow to keep
up."""

import re
import time

import pytest

import harness
from conftest import ws_location
from wsraw import WSClient, OP_TEXT, OP_PING, OP_PONG, wait_until

V2 = harness.test_plugin_so("v2probe")

TWO_CHILDREN = """
StartServers 2
ServerLimit 2
ThreadLimit 8
ThreadsPerChild 8
MaxRequestWorkers 16
MinSpareThreads 1
MaxSpareThreads 16
AsyncRequestWorkerFactor 1000
MaxConnectionsPerChild 0
"""


def topics_conf(extra=""):
    def conf(h):
        return (extra
                + ws_location("/v2", V2, "v2probe_init",
                              "    WebSocketCompressionMinSize 1M\n")
                + ws_location("/v2hist", V2, "v2probe_init",
                              "    WebSocketTopicHistory 50\n"
                              "    WebSocketCompressionMinSize 1M\n")
                + ws_location("/v2slow", V2, "v2probe_init",
                              "    WebSocketSendQueueLimit 64K\n")
                + ws_location("/v2drop", V2, "v2probe_init",
                              "    WebSocketSendQueueLimit 64K\n"
                              "    WebSocketTopicOverflow Drop\n"))
    return conf


def conn(h, cid, path="/v2", **kw):
    return WSClient(h.port, path, headers=[("X-Conn-Id", cid)], **kw)


def subscribe(h, c, cid, topic, extra=""):
    mark = h.mark()
    c.send_text("sub:%s%s" % (topic, extra))
    text = h.expect_log(lambda t: re.search(r"^v2 sub %s %s rc=" % (cid, re.escape(topic)),
                                            t, re.M), mark, "test")
    m = re.search(r"^v2 sub %s %s rc=(-?\d+)" % (cid, re.escape(topic)), text, re.M)
    assert m.group(1) == "0", text


@pytest.fixture(scope="module")
def tsrv():
    from conftest import serve
    # Small kernel buffers: what a slow subscriber is sent stays queued in
    # the module, where its limit applies.
    yield from serve(topics_conf("SendBufferSize 4096\n"),
                     loglevel="warn websocket:info")


def test_publish_reaches_subscribers_in_order(tsrv):
    subs = [conn(tsrv, "s%d" % i) for i in range(5)]
    other = conn(tsrv, "o")
    pub = conn(tsrv, "p")
    try:
        for i, c in enumerate(subs):
            subscribe(tsrv, c, "s%d" % i, "news")
        subscribe(tsrv, other, "o", "sports")
        for i in range(200):
            pub.send_text("pub:news:n%d" % i)
        for c in subs:
            assert [c.recv_text(timeout=5) for _ in range(200)] == [
                "n%d" % i for i in range(200)]
        pub.send_text("pub:sports:goal")
        assert other.recv_text(timeout=5) == "goal"   # and no news before it
    finally:
        for c in subs + [other, pub]:
            c.close()


def test_publish_counts_and_excludes_the_sender(tsrv):
    a, b = conn(tsrv, "ea"), conn(tsrv, "eb")
    try:
        subscribe(tsrv, a, "ea", "room")
        subscribe(tsrv, b, "eb", "room")
        mark = tsrv.mark()
        a.send_text("pubx:room:hello")
        assert b.recv_text(timeout=5) == "hello"
        m = re.search(r"v2 pub ea room rc=(-?\d+)",
                      tsrv.expect_log("v2 pub ea room", mark, "test"))
        assert m.group(1) == "2"                        # both subscribed
        a.send_text("ping-self-fence")                  # a got nothing
        assert a.recv_text(timeout=5) == "ping-self-fence"
        b.send_text("unsub:room")
        tsrv.expect_log("v2 unsub eb room rc=0", mark, "test")
        a.send_text("pub:room:again")
        assert a.recv_text(timeout=5) == "again"
        b.send_text("fence")
        assert b.recv_text(timeout=5) == "fence"        # b got nothing
    finally:
        a.close()
        b.close()


def test_subscriber_closed_when_too_slow(tsrv):
    """A subscriber that never reads is closed with 1013 once its queue
    is full; the others get every message (before, nothing bounded it)."""
    mark = tsrv.mark()
    slow = conn(tsrv, "slow", path="/v2slow", rcvbuf=4096)
    fast = conn(tsrv, "fast")
    pub = conn(tsrv, "pub")
    try:
        subscribe(tsrv, slow, "slow", "flood")
        subscribe(tsrv, fast, "fast", "flood")
        body = "x" * 4000
        for i in range(200):
            pub.send_text("pub:flood:%d %s" % (i, body))
        for i in range(200):
            assert fast.recv_text(timeout=5) == "%d %s" % (i, body)
        text = tsrv.expect_log("too slow for topic flood", mark)
        assert "with 1013" in text
        slow.settimeout(10)
        slow.expect_close(1013, timeout=10, allow_data=True, reply=True)
    finally:
        for c in (slow, fast, pub):
            c.close()


def test_dropping_subscriber_is_told_of_the_gap(tsrv):
    """WebSocketTopicOverflow Drop: the slow subscriber stays, misses what
    did not fit, and the next message it gets says how many it missed:
    every message is delivered or counted as missed, none silently lost."""
    slow = conn(tsrv, "drop", path="/v2drop", rcvbuf=4096)
    pub = conn(tsrv, "dp")
    try:
        subscribe(tsrv, slow, "drop", "drops", ":ids")
        body = "y" * 4000
        for i in range(200):
            pub.send_text("pub:drops:%d %s" % (i, body))
        pub.send_text("fence")
        assert pub.recv_text(timeout=5) == "fence"
        got, missed = [], 0

        def take(text):
            head, _, payload = text.partition("\n\n")
            m = re.search(r"^gap: (\d+)$", head, re.M)
            return payload, int(m.group(1)) if m else 0

        # The reader of the subscriber's child may still be delivering the
        # last publishes (it runs apart from the publisher's echo), and what
        # it delivers may be dropped: so each Pong that comes back (all that
        # was queued before it has been read) is followed by one more
        # numbered "last" and a Ping, until a "last" arrives.  Its gap then
        # counts whatever was dropped before it, earlier "last"s included.
        lasts = 0
        slow.send_frame(OP_PING, b"fence")
        while True:
            f = slow.recv_frame(timeout=5)
            if f.opcode == OP_PONG:
                lasts += 1
                pub.send_text("pub:drops:last:%d" % lasts)
                slow.send_frame(OP_PING, b"fence")
                continue
            payload, gap = take(f.payload.decode())
            missed += gap
            if payload.startswith("last:"):
                break
            got.append(int(payload.split(" ")[0]))
        k = int(payload.split(":")[1])
        assert 1 <= k <= lasts
        assert got == sorted(got) and len(got) < 200, got
        assert missed >= 1, "the subscriber was not told what it missed"
        assert len(got) + missed == 200 + (k - 1), (len(got), missed, k)
    finally:
        slow.close()
        pub.close()


def ids_messages(c, n):
    out = []
    for _ in range(n):
        text = c.recv_text(timeout=5)
        head, _, payload = text.partition("\n\n")
        fields = dict(line.split(": ", 1) for line in head.split("\n"))
        out.append((fields, payload))
    return out


def test_ids_and_resume_from_history(tsrv):
    """A subscriber with ids that goes away and comes back with the last
    id it saw gets what it missed from the history, then live messages,
    none twice, none lost; an id too old says gap."""
    pub = conn(tsrv, "hp")
    a = conn(tsrv, "ha", path="/v2hist")
    try:
        subscribe(tsrv, a, "ha", "hist", ":ids")
        for i in range(3):
            pub.send_text("pub:hist:m%d" % i)
        msgs = ids_messages(a, 3)
        assert [p for _, p in msgs] == ["m0", "m1", "m2"]
        assert all("gap" not in f for f, _ in msgs)
        last = msgs[-1][0]["id"]
        a.abort()
        for i in range(3, 8):                      # missed while away
            pub.send_text("pub:hist:m%d" % i)
        pub.send_text("fence")
        assert pub.recv_text(timeout=5) == "fence"
        b = conn(tsrv, "hb", path="/v2hist")
        subscribe(tsrv, b, "hb", "hist", ":ids:" + last)
        pub.send_text("pub:hist:m8")
        msgs = ids_messages(b, 6)
        assert [p for _, p in msgs] == ["m%d" % i for i in range(3, 9)]
        assert all("gap" not in f for f, _ in msgs), msgs
        seqs = [int(f["id"].split("-")[1]) for f, _ in msgs]
        assert seqs == sorted(seqs) and len(set(seqs)) == 6
        b.close()
        # An id from another epoch (or long gone): a gap is said.
        c = conn(tsrv, "hc", path="/v2hist")
        subscribe(tsrv, c, "hc", "hist", ":ids:deadbeef-1")
        first = ids_messages(c, 1)[0]
        assert first[0].get("gap") == "?", first
        c.close()
    finally:
        pub.close()
        a.close()


@pytest.mark.parametrize("mpm", ["event", "prefork"])
def test_topics_across_children(make_httpd, mpm):
    """Subscribers in two child processes (by the pid each reports) all
    get a publish made in either child, in the same order."""
    mpm_conf = TWO_CHILDREN if mpm == "event" else (
        "StartServers 4\nMinSpareServers 4\nMaxSpareServers 8\n"
        "ServerLimit 16\nMaxRequestWorkers 16\n")
    h = make_httpd(topics_conf(), mpm=mpm, mpm_conf=mpm_conf)
    h.start()
    by_pid, clients = {}, []
    try:
        for i in range(40):
            c = conn(h, "x%d" % i)
            clients.append(c)
            c.send_text("info")
            pid = re.search(r"pid=(\d+)", c.recv_text(timeout=5)).group(1)
            by_pid.setdefault(pid, []).append((i, c))
            if len(by_pid) >= 2 and len(clients) >= 4:
                break
        assert len(by_pid) >= 2, "connections all landed in one child"
        pids = sorted(by_pid)[:2]
        subs = [by_pid[pid][0] for pid in pids]
        # Publishers: the others, from different children where possible.
        rest = [ic for ic in sorted(((i, c) for v in by_pid.values()
                                     for i, c in v), key=lambda x: x[0])
                if ic not in subs]
        pubs = rest[:2]
        for i, c in subs:
            subscribe(h, c, "x%d" % i, "cross")
        for n in range(20):
            _, p = pubs[n % 2]
            p.send_text("pub:cross:c%d" % n)
        got = [[c.recv_text(timeout=5) for _ in range(20)] for _, c in subs]
        assert all(sorted(g, key=lambda s: int(s[1:])) == sorted(got[0], key=lambda s: int(s[1:]))
                   for g in got)
        assert all(g == got[0] for g in got), got      # one order for all
    finally:
        for c in clients:
            c.close()


def test_topics_off(make_httpd):
    h = make_httpd(topics_conf("WebSocketTopicBuffer Off\n"))
    h.start()
    mark = h.mark()
    with conn(h, "off") as c:
        c.send_text("sub:x")
        assert re.search(r"v2 sub off x rc=-5",
                         h.expect_log("v2 sub off x", mark, "test"))
        c.close_handshake(1000)


def test_graceful_restart_keeps_topics(make_httpd):
    """After a graceful restart new subscribers get what any child
    publishes, and message ids go on from where they were."""
    h = make_httpd(topics_conf(), mpm_conf=TWO_CHILDREN)
    h.start()
    with conn(h, "g1", path="/v2hist") as a, conn(h, "gp1") as p:
        subscribe(h, a, "g1", "gr", ":ids")
        p.send_text("pub:gr:before")
        before = ids_messages(a, 1)[0][0]["id"]
    h.graceful()
    with conn(h, "g2", path="/v2hist") as a, conn(h, "gp2") as p:
        subscribe(h, a, "g2", "gr", ":ids:" + before)
        p.send_text("pub:gr:after")
        f, payload = ids_messages(a, 1)[0]
        assert payload == "after" and "gap" not in f
        assert f["id"].split("-")[0] == before.split("-")[0]
        assert int(f["id"].split("-")[1]) > int(before.split("-")[1])
        a.close_handshake(1000)
        p.close_handshake(1000)
