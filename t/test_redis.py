"""WebSocketRedis: topics across nodes through Redis pub/sub.

Real parts: a redis-server of Debian's started here on a free loopback
port (never the system service), two private httpds ("nodes") relaying
through it, subscribers through the v2probe plugin (sub:<topic>), and
publishes by HTTP POST to a stand-in for the HTTP publisher
(t/modules/mod_ws_test_publish.c, which answers like websocket-publish
will: {"subscribers", "id", "replicated"}) or by the plugin's pub: command.

"Exactly once" is checked with fences: after a message, another node
publishes a fence; a subscriber's next message must be the fence, so a
second copy (which would come through Redis, before the fence) cannot
hide.
"""

import http.client
import json
import os
import re
import signal
import time

import pytest

import harness
from redisd import REDIS_SERVER, Redis, SilentServer
from test_status import status
from wsraw import WSClient

PREFIX = "t:"

pytestmark = pytest.mark.skipif(not os.path.exists(REDIS_SERVER),
                                reason="redis-server is not installed "
                                       "(make test installs it)")


# ---- nodes -------------------------------------------------------------------

def publish_so():
    return os.path.join(harness.BUILD, "t", "modules", ".libs",
                        "mod_ws_test_publish.so")


def node_conf(url, prefix=PREFIX, timeout="1s", extra=""):
    def conf(h):
        return """
LoadModule ws_test_publish_module "{pub}"
WebSocketRedis {url}
WebSocketRedisPrefix "{prefix}"
WebSocketRedisTimeout {timeout}
{extra}
<Location /v2>
    SetHandler websocket-handler
    WebSocketHandler "{v2}" v2probe_init
</Location>
<Location /echo>
    SetHandler websocket-handler
    WebSocketHandler "{echo}" echo_init
</Location>
<Location /testpub>
    SetHandler ws-test-publish
</Location>
""".format(pub=publish_so(), url=url, prefix=prefix, timeout=timeout,
           extra=extra, v2=harness.test_plugin_so("v2probe"), echo=h.echo_so)
    return conf


def publish(node, topic, message, binary=False):
    """POST to the node's publisher: its JSON answer."""
    c = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
    try:
        path = "/testpub?topic=%s%s" % (topic, "&binary" if binary else "")
        c.request("POST", path, body=message.encode()
                  if isinstance(message, str) else message)
        r = c.getresponse()
        body = r.read()
        assert r.status == 200, (r.status, body)
        return json.loads(body)
    finally:
        c.close()


_ids = iter(range(1, 1000000))


def subscriber(node, topic):
    """A v2probe connection subscribed to topic (its sub: answered rc=0)."""
    cid = "s%d" % next(_ids)
    mark = node.mark()
    ws = WSClient(node.port, "/v2", headers=[("X-Conn-Id", cid)], timeout=10)
    ws.send_text("sub:%s" % topic)
    node.expect_log("v2 sub %s %s rc=0" % (cid, topic), mark, which="test")
    return ws


def fence(node, subs, topic, text):
    """Publishes text on node; each of subs must get it as its very next
    message (nothing duplicated before it)."""
    assert publish(node, topic, text)["replicated"] is True
    for ws in subs:
        assert ws.recv_text(10) == text


@pytest.fixture(scope="module")
def redis():
    r = Redis()
    r.start()
    yield r
    r.cleanup()


@pytest.fixture(scope="module")
def nodes(redis):
    """Two nodes (httpds) relaying through one Redis."""
    conftest = __import__("conftest")
    made = []
    try:
        for _ in range(2):
            h = harness.Httpd()
            h.write_conf(node_conf(redis.url())(h))
            made.append(h)
            h.start()
            conftest.register(h)
        yield made
    finally:
        for h in made:
            if h in conftest._servers:
                conftest._servers.remove(h)
            try:
                h.stop()
            finally:
                h.cleanup()


def relay_ready(node, redis):
    """Waits until the node's relay is connected (a message published now
    is replicated)."""
    end = time.monotonic() + 15
    while publish(node, "__probe__", "probe")["replicated"] is not True:
        assert time.monotonic() < end, node.error_log()[-2000:]
        time.sleep(0.05)


# ---- tests -----------------------------------------------------------------

def test_publish_reaches_both_nodes_once(nodes, redis):
    a, b = nodes
    relay_ready(a, redis)
    relay_ready(b, redis)
    sa, sb = subscriber(a, "news"), subscriber(b, "news")
    redis.wait_numsub(PREFIX + "news", 2)
    answer = publish(a, "news", "hello from A")
    assert answer["replicated"] is True and answer["subscribers"] == 1
    assert sa.recv_text(10) == "hello from A"
    assert sb.recv_text(10) == "hello from A"
    fence(b, (sa, sb), "news", "fence from B")
    # The other way, and a plugin's publish (v2probe pub:) on B.
    publish(b, "news", "hello from B")
    assert sa.recv_text(10) == "hello from B"
    assert sb.recv_text(10) == "hello from B"
    with WSClient(b.port, "/v2", timeout=10) as pub:
        pub.send_text("pub:news:from a plugin")
        assert sa.recv_text(10) == "from a plugin"
        assert sb.recv_text(10) == "from a plugin"
    fence(a, (sa, sb), "news", "fence from A")
    for ws in (sa, sb):
        ws.close()


def test_binary_and_ids_across_nodes(nodes, redis):
    a, b = nodes
    cid = "ids%d" % next(_ids)
    mark = b.mark()
    sb = WSClient(b.port, "/v2", headers=[("X-Conn-Id", cid)], timeout=10)
    sb.send_text("sub:bin:ids")
    b.expect_log("v2 sub %s bin rc=0" % cid, mark, which="test")
    redis.wait_numsub(PREFIX + "bin", 1)
    publish(a, "bin", b"\x00\xff\x01", binary=True)
    op, data = sb.recv_message(10)
    # B's own id ("id: <epoch>-<seq>") for a message of A: ids are B's.
    assert op == 2 and data.endswith(b"\n\n\x00\xff\x01")
    assert data.startswith(b"id: ")
    sb.close()


def test_200_messages_in_order(nodes, redis):
    a, b = nodes
    sa, sb = subscriber(a, "order"), subscriber(b, "order")
    redis.wait_numsub(PREFIX + "order", 2)
    c = http.client.HTTPConnection("127.0.0.1", a.port, timeout=10)
    for i in range(200):
        c.request("POST", "/testpub?topic=order", body=b"m%d" % i)
        r = c.getresponse()
        assert r.status == 200 and json.loads(r.read())["replicated"] is True
    c.close()
    for ws in (sa, sb):
        got = [ws.recv_text(10) for _ in range(200)]
        assert got == ["m%d" % i for i in range(200)]
    fence(b, (sa, sb), "order", "end")


def test_topic_and_prefix_isolation(nodes, redis):
    a, b = nodes
    sb_x, sb_y = subscriber(b, "iso-x"), subscriber(b, "iso-y")
    redis.wait_numsub(PREFIX + "iso-x", 1)
    redis.wait_numsub(PREFIX + "iso-y", 1)
    publish(a, "iso-y", "for y")
    assert sb_y.recv_text(10) == "for y"
    # Another application's prefix, and a channel without ours: nothing.
    redis.cmd("PUBLISH", "other:iso-x", "not ours")
    redis.cmd("PUBLISH", "iso-x", "not ours either")
    # Another program publishing plain text on our channel is delivered.
    redis.cmd("PUBLISH", PREFIX + "iso-x", "from redis-cli")
    assert sb_x.recv_text(10) == "from redis-cli"
    fence(a, (sb_y,), "iso-y", "fence y")
    fence(a, (sb_x,), "iso-x", "fence x")
    sb_x.close()
    sb_y.close()


def test_unsubscribes_when_the_last_subscriber_leaves(nodes, redis):
    a, b = nodes
    s1, s2 = subscriber(b, "leave"), subscriber(b, "leave")
    redis.wait_numsub(PREFIX + "leave", 1)
    s1.close()
    time.sleep(0.3)                  # s2 remains: the channel must stay
    assert redis.numsub(PREFIX + "leave") == 1
    s2.close()
    redis.wait_numsub(PREFIX + "leave", 0)


def single_node(make_httpd, url, **kw):
    h = make_httpd(node_conf(url, **kw))
    h.start()
    return h


def wait_replicated(node, value, timeout=15.0):
    end = time.monotonic() + timeout
    while True:
        answer = publish(node, "__probe__", "probe")
        if answer["replicated"] is value:
            return
        assert time.monotonic() < end, (answer, node.error_log()[-3000:])
        time.sleep(0.05)


UNAVAILABLE = re.compile(r"Redis at \S+ unavailable")


def test_redis_down_then_back(make_httpd):
    """Redis stopped: local delivery goes on, publishers are told, one
    error line; started again: subscriptions and cross-node delivery come
    back without restarting Apache."""
    r = Redis().start()
    try:
        a = single_node(make_httpd, r.url())
        b = single_node(make_httpd, r.url())
        wait_replicated(a, True)
        wait_replicated(b, True)
        sa, sb = subscriber(a, "live"), subscriber(b, "live")
        r.wait_numsub(PREFIX + "live", 2)
        mark_a = a.mark()
        r.stop()
        a.expect_log(lambda t: UNAVAILABLE.search(t), mark_a, timeout=10)
        wait_replicated(a, False)
        for i in range(5):
            answer = publish(a, "live", "local %d" % i)
            assert answer["replicated"] is False
            assert sa.recv_text(10) == "local %d" % i
        assert len(UNAVAILABLE.findall(a.since(mark_a))) == 1
        # Back on the same port: within seconds, with "live" subscribed.
        r.start()
        a.expect_log("is back", mark_a, timeout=15)
        r.wait_numsub(PREFIX + "live", 2, timeout=15)
        wait_replicated(a, True)
        wait_replicated(b, True)
        publish(a, "live", "after the outage")
        assert sa.recv_text(10) == "after the outage"
        # B missed the local ones (Redis was away), and gets this one.
        assert sb.recv_text(10) == "after the outage"
        fence(b, (sa, sb), "live", "fence")
        assert len(UNAVAILABLE.findall(a.since(mark_a))) == 1
        sa.close()
        sb.close()
    finally:
        r.cleanup()


def echo_ms(node):
    with WSClient(node.port, "/echo", timeout=10) as ws:
        t0 = time.monotonic()
        ws.send_text("ping?")
        assert ws.recv_text(10) == "ping?"
        return (time.monotonic() - t0) * 1000


def test_redis_that_never_answers(make_httpd):
    """A server that accepts and never answers: the relay gives up by its
    own timeout, publishes stay local and say so, the event loop is not
    held, and the server stops promptly."""
    silent = SilentServer()
    try:
        a = single_node(make_httpd, "redis://127.0.0.1:%d" % silent.port,
                        timeout="300ms")
        mark = {}                    # from the start
        a.expect_log(lambda t: UNAVAILABLE.search(t)
                     and "does not answer" in t, mark, timeout=10)
        sa = subscriber(a, "quiet")
        answer = publish(a, "quiet", "still local")
        assert answer["replicated"] is False
        assert sa.recv_text(10) == "still local"
        assert echo_ms(a) < 1000
        # Retries go on (with backoff), logged once.
        end = time.monotonic() + 10
        while silent.accepted < 3:
            assert time.monotonic() < end
            time.sleep(0.05)
        assert len(UNAVAILABLE.findall(a.since(mark))) == 1
        sa.close()
        t0 = time.monotonic()
        a.stop()
        assert time.monotonic() - t0 < 8
    finally:
        silent.close()


def test_redis_paused_mid_stream(make_httpd):
    """Redis stops answering on a live connection (SIGSTOP): publishers
    are told within the timeout, nothing holds the loop; it answers
    again (SIGCONT): replication resumes."""
    r = Redis().start()
    try:
        a = single_node(make_httpd, r.url(), timeout="500ms")
        wait_replicated(a, True)
        sa = subscriber(a, "paused")
        mark = a.mark()
        r.pause()
        try:
            publish(a, "paused", "into the void")
            assert sa.recv_text(10) == "into the void"
            a.expect_log(lambda t: UNAVAILABLE.search(t), mark, timeout=10)
            assert publish(a, "paused", "told")["replicated"] is False
            assert sa.recv_text(10) == "told"
            assert echo_ms(a) < 1000
        finally:
            r.resume()
        a.expect_log("is back", mark, timeout=15)
        wait_replicated(a, True)
        sa.close()
    finally:
        r.cleanup()


def test_wrong_password(make_httpd):
    r = Redis(password="right-one").start()
    try:
        good = single_node(make_httpd, r.url())
        bad = single_node(make_httpd, r.url(password="wrong-one"))
        bad.expect_log(lambda t: UNAVAILABLE.search(t) and "AUTH" in t,
                       timeout=10)
        assert "wrong-one" not in bad.error_log()
        wait_replicated(good, True)
        sb = subscriber(bad, "pw")
        answer = publish(bad, "pw", "local only")
        assert answer["replicated"] is False
        assert sb.recv_text(10) == "local only"
        # The good node replicates; the bad node never subscribed.
        assert r.numsub(PREFIX + "pw") == 0
        sb.close()
    finally:
        r.cleanup()


def test_relay_moves_when_its_child_dies(make_httpd):
    """The relay's child is killed: another child takes the relay over
    and cross-node delivery goes on."""
    r = Redis().start()
    mpm = ("StartServers 2\nServerLimit 4\nThreadsPerChild 25\n"
           "MinSpareThreads 50\nMaxSpareThreads 100\nMaxRequestWorkers 100\n"
           "ThreadLimit 25\nMaxConnectionsPerChild 0\n")
    try:
        a = make_httpd(node_conf(r.url()), mpm_conf=mpm,
                       loglevel="warn websocket:info")
        a.start()
        b = single_node(make_httpd, r.url())
        text = a.expect_log("relay for", timeout=10)
        pid = int(re.search(r"\[pid (\d+).*relay for", text).group(1))
        wait_replicated(a, True)
        sb = subscriber(b, "moved")
        r.wait_numsub(PREFIX + "moved", 1)
        mark = a.mark()
        os.kill(pid, signal.SIGKILL)
        a.expect_log("takes the relay over", mark, timeout=10)
        wait_replicated(a, True)
        publish(a, "moved", "after the move")
        assert sb.recv_text(10) == "after the move"
        sb.close()
        # The kill is ours: not a crash to report.
        a._crash_mark = a.mark()
        a.stop(check=False)
    finally:
        r.cleanup()


def test_directive_errors(make_httpd):
    for bad, why in (("http://x", "must start with"),
                     ("redis://h:1/x", "database"),
                     ("unix:relative", "absolute")):
        h = make_httpd(lambda h: "WebSocketRedis %s\n" % bad)
        rc, out = h.configtest()
        assert rc != 0 and why in out, out
    h = make_httpd(lambda h: "<VirtualHost *:80>\nWebSocketRedis "
                             "redis://127.0.0.1\n</VirtualHost>\n")
    rc, out = h.configtest()
    assert rc != 0


def test_graceful_restart_moves_the_relay(make_httpd):
    """On prefork: a graceful restart hands the relay to a child of the
    new generation, which subscribes again; delivery across nodes goes
    on without a full restart."""
    r = Redis().start()
    try:
        a = make_httpd(node_conf(r.url()), mpm="prefork")
        a.start()
        b = single_node(make_httpd, r.url())
        wait_replicated(a, True)
        sa = subscriber(a, "restart")      # ends with the restart (1012)
        sb = subscriber(b, "restart")
        r.wait_numsub(PREFIX + "restart", 2)
        mark = a.mark()
        a.graceful()
        text = a.expect_log("relay for", mark, timeout=15)
        assert "runs in this child" in text
        # A's old subscriber is gone: A's channel goes, B's stays.
        r.wait_numsub(PREFIX + "restart", 1, timeout=15)
        sa2 = subscriber(a, "restart")
        r.wait_numsub(PREFIX + "restart", 2, timeout=15)
        wait_replicated(a, True)
        publish(a, "restart", "after the restart")
        assert sb.recv_text(10) == "after the restart"
        assert sa2.recv_text(10) == "after the restart"
        fence(b, (sa2, sb), "restart", "fence")
        for ws in (sa, sa2, sb):
            ws.abort()
    finally:
        r.cleanup()


def children_rss_kib(node):
    total = 0
    for pid in node.children():
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


@pytest.mark.noasan                  # ASan's quarantine keeps freed bodies
def test_memory_stays_bounded_while_redis_is_away(make_httpd):
    """Nothing is buffered for Redis while it is away: 64 MiB published
    on a node whose Redis is down leave its children's memory where it
    was (a relay keeping them for later would grow by as much)."""
    r = Redis().start()
    try:
        a = single_node(make_httpd, r.url(),
                        extra="WebSocketTopicBuffer 4M\n")
        wait_replicated(a, True)
        r.stop()
        wait_replicated(a, False)
        body = b"x" * (256 * 1024)
        c = http.client.HTTPConnection("127.0.0.1", a.port, timeout=10)
        for _ in range(16):          # the ring's pages, touched once
            c.request("POST", "/testpub?topic=big", body=body)
            c.getresponse().read()
        before = children_rss_kib(a)
        for _ in range(256):
            c.request("POST", "/testpub?topic=big", body=body)
            resp = c.getresponse()
            assert json.loads(resp.read())["replicated"] is False
        c.close()
        grew = children_rss_kib(a) - before
        assert grew < 16 * 1024, "children grew by %d KiB" % grew
    finally:
        r.cleanup()


STATUS = """
LoadModule status_module {moddir}/mod_status.so
<Location /server-status>
    SetHandler server-status
</Location>
"""


def redis_status(node):
    """The WebSocketRedis* lines of server-status?auto, as {key: int}."""
    return {k: v for k, v in status(node).items()
            if k.startswith("WebSocketRedis")}


def test_server_status_shows_the_relay(make_httpd):
    """mod_status: the relay's link, its child, and messages each way,
    counted by the node that moved them; a node without WebSocketRedis
    shows no Redis lines."""
    r = Redis().start()
    try:
        extra = STATUS.format(moddir=harness.MODDIR)
        a = single_node(make_httpd, r.url(), extra=extra)
        b = single_node(make_httpd, r.url(), extra=extra)
        wait_replicated(a, True)
        wait_replicated(b, True)
        sb = subscriber(b, "counted")
        r.wait_numsub(PREFIX + "counted", 1)
        out_a, in_b = (redis_status(a)["WebSocketRedisMessagesOut"],
                       redis_status(b)["WebSocketRedisMessagesIn"])
        for i in range(3):
            assert publish(a, "counted", "m%d" % i)["replicated"] is True
            assert sb.recv_text(10) == "m%d" % i
        sa_now, sb_now = redis_status(a), redis_status(b)
        assert sa_now["WebSocketRedisConnected"] == 1, sa_now
        assert sa_now["WebSocketRedisRelayPid"] in a.children(), sa_now
        assert sa_now["WebSocketRedisMessagesOut"] >= out_a + 3, sa_now
        assert sb_now["WebSocketRedisMessagesIn"] == in_b + 3, sb_now
        assert sb_now["WebSocketRedisChannels"] >= 1, sb_now
        sb.close()
        plain = make_httpd(lambda h: extra)
        plain.start()
        assert redis_status(plain) == {}
    finally:
        r.cleanup()
