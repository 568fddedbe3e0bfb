"""The WebSocket section of mod_status: server-status?auto lines summed
over every child (event's loops, prefork's children, HTTP/2 streams),
closes by class, bytes queued, dispatch threads, slow plugins, topics,
and totals that survive the children that counted them."""

import os
import re
import socket
import time
import urllib.request

import pytest

import harness
from h2ws import H2Conn
from test_async_slow import sleeping
from wsraw import (WSClient, OP_TEXT, close_payload, wait_for,
                   server_send_queue)

STATUS_CONF = """
LoadModule status_module {moddir}/mod_status.so
LoadModule http2_module {moddir}/mod_http2.so
Protocols h2c http/1.1
H2WebSockets on
<Location /server-status>
    SetHandler server-status
</Location>
"""


def loc(path, so, init, extra=""):
    return ("<Location %s>\n    SetHandler websocket-handler\n"
            '    WebSocketHandler "%s" %s\n%s</Location>\n'
            % (path, so, init, extra))


def status_conf(h):
    return (STATUS_CONF.format(moddir=harness.MODDIR)
            + loc("/echo", h.echo_so, "echo_init")
            + loc("/probe", harness.test_plugin_so("probe"), "probe_init")
            + loc("/v2", harness.test_plugin_so("v2probe"), "v2probe_init")
            + loc("/slow", harness.test_plugin_so("slow"), "slow_init",
                  "    WebSocketSlowPlugin Always\n")
            + loc("/blocking", harness.test_plugin_so("slow"), "slow_init",
                  "    WebSocketSlowPlugin 20ms\n"))


def status(h):
    """server-status?auto as {key: int} for the WebSocket lines."""
    with urllib.request.urlopen(h.url("/server-status?auto"),
                                timeout=10) as r:
        text = r.read().decode()
    return {k: int(v) for k, v in re.findall(r"^(WebSocket\w+): (-?\d+)$",
                                             text, re.M)}


def wait_status(h, pred, what, timeout=5):
    last = {}

    def check():
        last.clear()
        last.update(status(h))
        return pred(last)
    try:
        wait_for(check, what, timeout=timeout)
    except AssertionError:
        raise AssertionError("%s; server-status says %r" % (what, last))
    return last


@pytest.fixture(scope="module")
def st_srv():
    from conftest import serve
    yield from serve(status_conf, loglevel="warn websocket:debug")


def echo(c, text):
    c.send_text(text)
    assert c.recv_text() == text


def test_connections_messages_bytes(st_srv):
    before = status(st_srv)
    assert before["WebSocketChildren"] >= 1
    a = WSClient(st_srv.port, "/echo")
    b = WSClient(st_srv.port, "/echo")
    h2 = H2Conn(st_srv.port)
    try:
        s = h2.websocket("/echo")
        for i in range(10):
            echo(a, "a%d" % i)
        echo(b, "b")
        echo(s, "h2")
        now = wait_status(st_srv, lambda d: d["WebSocketMessagesIn"]
                          >= before["WebSocketMessagesIn"] + 12,
                          "12 more messages in")
        assert now["WebSocketConnections"] == 3, now
        assert now["WebSocketConnectionsAsync"] == 2, now
        assert now["WebSocketConnectionsHTTP2"] == 1, now
        assert now["WebSocketConnectionsOpened"] \
            == before["WebSocketConnectionsOpened"] + 3
        assert now["WebSocketMessagesOut"] == before["WebSocketMessagesOut"] + 12
        # Frames as they travel: 2 + 4 (mask) + payload in, 2 + payload out.
        n_in = sum(6 + len("a%d" % i) for i in range(10)) + 7 + 8
        assert now["WebSocketBytesIn"] - before["WebSocketBytesIn"] == n_in
        assert now["WebSocketBytesOut"] - before["WebSocketBytesOut"] \
            == n_in - 4 * 12
        s.close_handshake(1000)
    finally:
        a.close()
        b.close()
        h2.close()
    wait_status(st_srv, lambda d: d["WebSocketConnections"] == 0,
                "no WebSocket open")


def test_closes_by_class(st_srv):
    before = status(st_srv)
    with WSClient(st_srv.port, "/echo") as c:
        c.close_handshake(1000)
    with WSClient(st_srv.port, "/echo") as c:
        c.close_handshake(1001)
    with WSClient(st_srv.port, "/echo") as c:
        c.close_handshake(4321)
    with WSClient(st_srv.port, "/echo") as c:
        c.send_frame(OP_TEXT, b"\xff")          # invalid UTF-8: 1007
        c.expect_close(1007)
    with WSClient(st_srv.port, "/probe") as c:
        c.send_text("sendclose:03f0")           # 1008 from the plugin
        c.expect_close(1008, reply=True)
    c = WSClient(st_srv.port, "/echo")
    echo(c, "then vanish")
    c.abort()                                   # no Close: 1006
    want = {"WebSocketClosesNormal": 1, "WebSocketClosesGoingAway": 1,
            "WebSocketClosesApplication": 1,
            "WebSocketClosesProtocolError": 1, "WebSocketClosesPolicy": 1,
            "WebSocketClosesAbnormal": 1, "WebSocketClosesRestart": 0,
            "WebSocketClosesServerError": 0, "WebSocketClosesOther": 0}
    now = wait_status(st_srv, lambda d: all(
        d[k] - before[k] == n for k, n in want.items()), "one of each class")
    assert now["WebSocketConnections"] == 0


def test_bytes_queued_for_a_slow_reader(st_srv):
    """A client that does not read: what the plugin sent waits in the
    server's queue, and server-status says how much; once read, none."""
    c = WSClient(st_srv.port, "/probe", rcvbuf=4096)
    try:
        c.send_text("queue:65536:64")            # 4 MiB at once
        wait_for(lambda: server_send_queue(c) > 0, "a full socket")
        now = wait_status(st_srv, lambda d: d["WebSocketBytesQueued"]
                          > 1024 * 1024, "megabytes queued")
        assert now["WebSocketBytesQueued"] <= 4 * 65540 * 16, now
        got = 0
        while got < 64:
            f = c.recv_frame(timeout=10)
            got += f.opcode == 2
        wait_status(st_srv, lambda d: d["WebSocketBytesQueued"] == 0,
                    "nothing queued once read")
        c.close_handshake(1000)
    finally:
        c.close()


def test_dispatch_threads_busy(st_srv):
    with WSClient(st_srv.port, "/slow") as c:
        sleeping(st_srv, c, "sleep:1500 busy")
        now = status(st_srv)
        assert now["WebSocketDispatchThreadsBusy"] == 1, now
        assert c.recv_text(timeout=5) == "sleep:1500 busy"
        wait_status(st_srv, lambda d: d["WebSocketDispatchThreadsBusy"] == 0,
                    "no dispatch thread busy")
        c.close_handshake(1000)


def test_slow_plugin_detected(st_srv):
    before = status(st_srv)
    with WSClient(st_srv.port, "/blocking") as c:
        c.send_text("sleep:500 block the loop")
        assert c.recv_text(timeout=5) == "sleep:500 block the loop"
        c.close_handshake(1000)
    now = wait_status(st_srv, lambda d: d["WebSocketSlowPlugins"]
                      == before["WebSocketSlowPlugins"] + 1,
                      "one more slow plugin")
    assert now["WebSocketLoopTakeovers"] >= before["WebSocketLoopTakeovers"] + 1


def test_topics(st_srv):
    subs = [WSClient(st_srv.port, "/v2", headers=[("X-Conn-Id", "t%d" % i)])
            for i in range(3)]
    try:
        before = status(st_srv)
        for c, topic in zip(subs, ("st-a", "st-a", "st-b")):
            c.send_text("sub:%s" % topic)
        wait_status(st_srv, lambda d: d["WebSocketTopics"] == 2
                    and d["WebSocketTopicSubscribers"] == 3,
                    "2 topics, 3 subscribers")
        subs[2].send_text("pub:st-a:hello")
        for c in subs[:2]:
            assert c.recv_text(timeout=5) == "hello"
        now = status(st_srv)
        assert now["WebSocketTopicPublishes"] \
            == before["WebSocketTopicPublishes"] + 1, now
    finally:
        for c in subs:
            c.close()
    wait_status(st_srv, lambda d: d["WebSocketTopicSubscribers"] == 0,
                "no subscriber left")


def test_html_section(st_srv):
    with WSClient(st_srv.port, "/echo") as c:
        with urllib.request.urlopen(st_srv.url("/server-status"),
                                    timeout=10) as r:
            html = r.read().decode()
        c.close_handshake(1000)
    assert "<h2>WebSockets</h2>" in html
    m = re.search(r"<tr><td>Open WebSockets</td><td[^>]*>(\d+)</td></tr>",
                  html)
    assert m and int(m.group(1)) == 1, html[-3000:]
    # ?notable: the same lines without tables.
    with urllib.request.urlopen(st_srv.url("/server-status?notable"),
                                timeout=10) as r:
        assert "<dt>Open WebSockets</dt><dd>0</dd>" in r.read().decode()


# ---- summed over children -------------------------------------------------------

PREFORK = """
StartServers 3
MinSpareServers 3
MaxSpareServers 10
ServerLimit 10
MaxRequestWorkers 10
MaxConnectionsPerChild 0
"""


def test_summed_over_prefork_children_and_kept_across_restart(make_httpd):
    """prefork: one WebSocket per child, so the figures are sums; the
    counters go on across a graceful restart (the old children's totals
    join the server's), while the gauges count the children that run."""
    h = make_httpd(status_conf, mpm="prefork", mpm_conf=PREFORK)
    h.start()
    clients = [WSClient(h.port, "/echo") for _ in range(3)]
    try:
        for i, c in enumerate(clients):
            for k in range(5):
                echo(c, "c%d %d" % (i, k))
        now = wait_status(h, lambda d: d["WebSocketMessagesIn"] == 15,
                          "15 messages in")
        assert now["WebSocketConnections"] == 3, now
        assert now["WebSocketConnectionsSync"] == 3, now
        assert now["WebSocketChildren"] >= 4, now   # 3 + the status one
        for c in clients:
            c.close_handshake(1000)
        h.graceful()
        wait_for(lambda: len(h.children()) >= 3, "the new generation")
        with WSClient(h.port, "/echo") as c:
            echo(c, "new generation")
            now = wait_status(h, lambda d: d["WebSocketMessagesIn"] == 16,
                              "16 messages in, old and new children")
            assert now["WebSocketConnections"] == 1, now
            c.close_handshake(1000)
        wait_status(h, lambda d: d["WebSocketClosesNormal"] == 4
                    and d["WebSocketConnectionsOpened"] == 4, "4 closed")
    finally:
        for c in clients:
            c.close()


def test_a_killed_child_keeps_its_counts_not_its_gauges(make_httpd):
    """A child killed with its WebSocket open: its connection stops
    counting as open at once; what it counted still does."""
    h = make_httpd(status_conf, mpm="prefork", mpm_conf=PREFORK)
    h.start()
    c = WSClient(h.port, "/echo")
    try:
        echo(c, "counted")
        wait_status(h, lambda d: d["WebSocketConnections"] == 1, "one open")
        kill_child(h, child_serving(h, c))
        now = wait_status(h, lambda d: d["WebSocketConnections"] == 0,
                          "the dead child's connection not counted")
        assert now["WebSocketMessagesIn"] == 1, now
    finally:
        c.close()


def kill_child(h, pid):
    """SIGKILLs a child on purpose (the parent logs nothing for that
    signal) and waits until it is gone."""
    import signal
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: pid not in h.children() or not os.path.exists(
        "/proc/%d/fd" % pid), "child %d gone" % pid)


def child_serving(h, c):
    """The pid of the child whose socket is c's peer (by inode)."""
    me = c.sock.getsockname()[1]
    inode = None
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local = int(fields[1].split(":")[1], 16)
            remote = int(fields[2].split(":")[1], 16)
            if remote == me and local == h.port:
                inode = fields[9]
    assert inode, "no server socket for the client"
    for pid in h.children():
        try:
            for fd in os.listdir("/proc/%d/fd" % pid):
                if os.readlink("/proc/%d/fd/%s" % (pid, fd)) \
                        == "socket:[%s]" % inode:
                    return pid
        except OSError:
            continue
    raise AssertionError("no child holds the socket")
