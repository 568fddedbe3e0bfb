"""WebSocketMaxConnections (503) and WebSocketMaxConnectionsPerIP (429),
counted over every child: prefork gives each WebSocket a child of its
own, so a limit that holds there holds across children."""

import socket

import pytest

import harness
import wsraw
from h2ws import H2Conn
from test_status import PREFORK, child_serving, kill_child, status
from wsraw import WSClient, WSError, handshake, wait_for


def loc(path, so, init, extra=""):
    return ("<Location %s>\n    SetHandler websocket-handler\n"
            '    WebSocketHandler "%s" %s\n%s</Location>\n'
            % (path, so, init, extra))


def limits_conf(h):
    probe = harness.test_plugin_so("probe")
    return ("LoadModule status_module %s/mod_status.so\n"
            "LoadModule http2_module %s/mod_http2.so\n"
            "Protocols h2c http/1.1\nH2WebSockets on\n"
            "<Location /server-status>\n    SetHandler server-status\n"
            "</Location>\n" % (harness.MODDIR, harness.MODDIR)
            + loc("/limited", probe, "probe_init",
                  "    WebSocketMaxConnections 2\n")
            # Inherits /limited's limit, and its count.
            + "<Location /limited/sub>\n    WebSocketOriginCheck Off\n"
              "</Location>\n"
            + loc("/other", probe, "probe_init",
                  "    WebSocketMaxConnections 1\n")
            + loc("/perip", probe, "probe_init",
                  "    WebSocketMaxConnectionsPerIP 2\n")
            + loc("/perip2", probe, "probe_init",
                  "    WebSocketMaxConnectionsPerIP 2\n")
            + loc("/echo", h.echo_so, "echo_init"))


@pytest.fixture(scope="module")
def lim_module_srv():
    from conftest import serve
    yield from serve(limits_conf, mpm="prefork", mpm_conf=PREFORK)


@pytest.fixture
def lim_srv(lim_module_srv):
    """The module's server once the WebSockets of earlier tests ended."""
    wait_for(lambda: status(lim_module_srv)["WebSocketConnections"] == 0,
             "no WebSocket left open by an earlier test")
    return lim_module_srv


def refused(h, path, status, mark):
    """A handshake to path is refused with status and Retry-After: 5, and
    one info line says why."""
    r = handshake(h.port, path)
    assert r.status == status, r
    assert r.header("Retry-After") == "5", r
    return h.expect_log("refused with %d" % status, mark)


def test_max_connections_over_children(lim_srv):
    h = lim_srv
    before = status(h)["WebSocketRefusedMaxConnections"]
    a = WSClient(h.port, "/limited")
    b = WSClient(h.port, "/limited/sub")
    try:
        assert child_serving(h, a) != child_serving(h, b)
        mark = h.mark()
        log = refused(h, "/limited", 503, mark)
        assert "/limited has 2 WebSockets open in all children " \
               "(WebSocketMaxConnections 2)" in log, log
        assert log.count("refused with 503") == 1, log
        # Another location counts on its own.
        with WSClient(h.port, "/other") as o:
            refused(h, "/other", 503, h.mark())
            o.close_handshake(1000)
        # A place frees when a WebSocket ends.
        a.close_handshake(1000)
        # The client has the Close's answer a moment before the server
        # gives the place back: a handshake in between is refused, and
        # counted too.
        early = []
        c = wait_for(lambda: try_open(h, "/limited", early), "a free place")
        c.close_handshake(1000)
        assert status(h)["WebSocketRefusedMaxConnections"] \
            == before + 2 + len(early)
    finally:
        a.close()
        b.close()


def try_open(h, path, refusals=None):
    """A WebSocket, or None when refused (appended to refusals if given)."""
    try:
        return WSClient(h.port, path)
    except WSError as e:
        if refusals is not None:
            refusals.append(e)
        return None


def test_refused_handshakes_leave_no_count(lim_srv):
    """A handshake the plugin refuses (403), or one refused by the limit
    itself, gives its place back when its request ends (before, the 403's
    place stayed taken as long as its TCP connection, in keep-alive)."""
    h = lim_srv
    kept = []
    try:
        for _ in range(4):
            # Each in a connection left open in keep-alive.
            s = socket.create_connection(("127.0.0.1", h.port), timeout=10)
            kept.append(s)
            s.sendall(wsraw.request_bytes("/limited", wsraw.ws_headers(
                h.port, extra=[("X-Refuse", "1")])))
            head, _ = wsraw.recv_head(s)
            assert wsraw.parse_head(head)[0] == 403, head
        conns = [WSClient(h.port, "/limited") for _ in range(2)]
    finally:
        for s in kept:
            s.close()
    try:
        for _ in range(3):
            assert handshake(h.port, "/limited").status == 503
    finally:
        for c in conns:
            c.close_handshake(1000)
            c.close()
    wait_for(lambda: try_open(h, "/limited"), "a place again").close()


def test_per_ip(lim_srv):
    h = lim_srv
    before = status(h)["WebSocketRefusedPerIP"]
    conns = [WSClient(h.port, "/perip"), WSClient(h.port, "/perip2")]
    try:
        mark = h.mark()
        log = refused(h, "/perip", 429, mark)
        assert "127.0.0.1 has 2 WebSockets open in this server " \
               "(WebSocketMaxConnectionsPerIP 2)" in log, log
        # Another address is not concerned; nor is a location without
        # the limit.
        with WSClient(h.port, "/echo") as e:
            e.close_handshake(1000)
        conns.append(open_from(h, "/perip", "127.0.0.2"))
        assert status(h)["WebSocketRefusedPerIP"] == before + 1
    finally:
        for c in conns:
            c.close()


def open_from(h, path, source):
    """A WebSocket from another loopback address."""
    import wsraw
    s = socket.create_connection(("127.0.0.1", h.port), timeout=10,
                                 source_address=(source, 0))
    key = wsraw.make_key()
    s.sendall(wsraw.request_bytes(path, wsraw.ws_headers(h.port, key=key)))
    head, rest = wsraw.recv_head(s)
    code, reason, hdrs = wsraw.parse_head(head)
    assert code == 101, (code, reason)
    c = WSClient.__new__(WSClient)
    c.port, c.key, c.sock, c.buf, c.closed = h.port, key, s, rest, False
    c.response = wsraw.HTTPResponse(code, reason, hdrs, b"", head)
    return c


def test_http2_streams_count(lim_srv):
    h = lim_srv
    with H2Conn(h.port) as conn:
        s = conn.websocket("/other")
        assert handshake(h.port, "/other").status == 503
        s.close_handshake(1000)
    wait_for(lambda: try_open(h, "/other"), "/other free again").close()


def test_a_killed_child_frees_its_places(make_httpd):
    """A child that dies with its WebSockets (a crash, a kill) stops
    counting at once: its place is free without waiting for anything."""
    h = make_httpd(limits_conf, mpm="prefork", mpm_conf=PREFORK)
    h.start()
    a = WSClient(h.port, "/other")
    try:
        assert handshake(h.port, "/other").status == 503
        kill_child(h, child_serving(h, a))
        c = wait_for(lambda: try_open(h, "/other"), "the dead child's place")
        c.close_handshake(1000)
    finally:
        a.close()


def test_event_mpm(make_httpd):
    """One child, many connections: the count is the child's own."""
    h = make_httpd(limits_conf)
    h.start()
    conns = [WSClient(h.port, "/limited") for _ in range(2)]
    try:
        assert handshake(h.port, "/limited").status == 503
        conns.append(WSClient(h.port, "/perip"))
        conns.append(WSClient(h.port, "/perip"))
        assert handshake(h.port, "/perip").status == 429
    finally:
        for c in conns:
            c.close()
