"""The same guarantees on worker and prefork, where the synchronous engine
drives each WebSocket from its handler's thread: plugin threads
broadcasting, a slow plugin not holding up other connections, the access
log line at close.  (Echo, errors and dumb-increment there are in
test_lifecycle.py; graceful restarts in test_async.py.)"""

import time

import pytest

import harness
from wsraw import WSClient

from test_async import check_access_log_duration, echo, loc
from test_async_slow import sleeping
from test_async_scale import recv_tagged

MPM_CONF = {
    # One child, so that every connection shares the plugin's list.
    "worker": """
StartServers 1
ServerLimit 1
ThreadLimit 64
ThreadsPerChild 64
MaxRequestWorkers 64
MinSpareThreads 1
MaxSpareThreads 64
MaxConnectionsPerChild 0
""",
    "prefork": """
StartServers 12
MinSpareServers 4
MaxSpareServers 32
ServerLimit 40
MaxRequestWorkers 40
MaxConnectionsPerChild 0
""",
}


def conf(h):
    return (loc("/echo", h.echo_so, "echo_init")
            + loc("/broadcast", harness.test_plugin_so("broadcast"),
                  "broadcast_init")
            + loc("/slow", harness.test_plugin_so("slow"), "slow_init"))


@pytest.fixture(scope="module", params=["worker", "prefork"])
def sync_srv(request):
    from conftest import serve
    yield from serve(conf, mpm=request.param, mpm_conf=MPM_CONF[request.param],
                     loglevel="warn websocket:debug")


def test_engine_is_sync(sync_srv):
    mark = sync_srv.mark()
    with WSClient(sync_srv.port, "/echo") as c:
        echo(c, "which engine")
        c.close_handshake(1000)
    text = sync_srv.wait_log(lambda t: "WebSocket closed after" in t, mark)
    assert "WebSocket engine: sync" in text, text
    assert "WebSocket engine: async" not in text, text


def test_broadcast_from_plugin_thread(sync_srv):
    """worker: one child holds every connection, and the plugin's thread
    reaches all of them with every message in order.  prefork: a child
    holds one connection, so each client's trigger reaches it alone."""
    h = sync_srv
    n = 200
    if h.mpm == "worker":
        clients = [WSClient(h.port, "/broadcast") for _ in range(30)]
        try:
            clients[0].send_text("count")
            assert clients[0].recv_text() == "count 30"
            clients[0].send_text("go:alpha:%d:100" % n)
            clients[-1].send_text("go:beta:%d" % n)
            for i, c in enumerate(clients):
                got = recv_tagged(c, ("alpha", "beta"), n)
                assert got == {"alpha": list(range(n)),
                               "beta": list(range(n))}, i
                c.close_handshake(1000)
        finally:
            for c in clients:
                c.close()
        return
    clients = [WSClient(h.port, "/broadcast") for _ in range(4)]
    try:
        for i, c in enumerate(clients):
            c.send_text("count")
            assert c.recv_text() == "count 1"
            c.send_text("go:own%d:%d" % (i, n))
        for i, c in enumerate(clients):
            got = recv_tagged(c, ("own%d" % i,), n)
            assert got == {"own%d" % i: list(range(n))}, i
            c.close_handshake(1000)
    finally:
        for c in clients:
            c.close()


def test_slow_plugin_holds_only_its_connection(sync_srv):
    """Each connection has its own thread: a plugin sleeping for A does
    not delay B, and nothing is moved to dispatch threads."""
    h = sync_srv
    mark = h.mark()
    with WSClient(h.port, "/slow") as a, WSClient(h.port, "/slow") as b:
        echo(b, "warm")
        sleeping(h, a, "sleep:400")
        lat = []
        while len(lat) < 10:
            t = time.monotonic()
            echo(b, "b%d" % len(lat))
            lat.append(time.monotonic() - t)
        assert max(lat) < 0.1, ["%.3f" % x for x in lat]
        assert a.recv_text(timeout=5) == "sleep:400"
        a.close_handshake(1000)
        b.close_handshake(1000)
    assert "dispatch threads" not in h.since(mark)


@pytest.mark.slow
def test_access_log_written_at_close_with_duration(sync_srv):
    check_access_log_duration(sync_srv)
