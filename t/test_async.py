"""The asynchronous engine (event MPM): wss through mod_ssl, graceful
restarts while messages flow, Apache's timeouts not applying to open
WebSockets, WebSocketIdleTimeout, lingering closes that must not stall a
loop, and the access log line written when the socket closes.  The same
restart test runs on worker and prefork (the sync engine)."""

import asyncio
import os
import re
import select
import socket
import subprocess
import time

import pytest

import harness
from wsraw import (WSClient, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT,
                   http_request, request_bytes, server_send_queue, wait_for,
                   wait_until)
from test_async_slow import sleeping


def loc(path, so, init, extra=""):
    return ("<Location %s>\n    SetHandler websocket-handler\n"
            '    WebSocketHandler "%s" %s\n%s</Location>\n'
            % (path, so, init, extra))


def std_locations(h, echo_extra=""):
    return (loc("/echo", h.echo_so, "echo_init", echo_extra)
            + loc("/dumb-increment", h.dumb_so, "dumb_increment_init")
            + loc("/probe", harness.test_plugin_so("probe"), "probe_init"))


def echo(c, text, timeout=5):
    c.send_text(text)
    got = c.recv_text(timeout=timeout)
    assert got == text, (got, text)


def alive(pid):
    """Running, not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# ---- wss: the async engine through mod_ssl ------------------------------------

@pytest.fixture(scope="module")
def tls_srv():
    from conftest import serve
    yield from serve(std_locations, tls=True, loglevel="warn websocket:debug")


def wss(h, path="/echo", **kw):
    return WSClient(h.tls_port, path, tls=h.ssl_context(), **kw)


def test_wss_echo_small_and_large(tls_srv):
    """Echo over TLS, small and 1 MiB messages, then a clean close: the
    closing handshake, then TLS close_notify (a ragged end of TLS would
    raise ssl.SSLError in the client), then TCP's end.  The connection
    ran on the async engine."""
    h = tls_srv
    mark = h.mark()
    with wss(h) as c:
        assert c.sock.version().startswith("TLS")
        echo(c, "hello over TLS")
        blob = os.urandom(1 << 20)
        c.send_binary(blob)
        assert c.recv_message(timeout=10) == (OP_BINARY, blob)
        text = "\u00e9t\u00e9 " * (1 << 18)             # 1.25 MiB of UTF-8
        c.send_text(text)
        assert c.recv_text(timeout=10) == text
        c.send_frame(OP_PING, b"tls ping")
        f = c.recv_frame(timeout=5)
        assert (f.opcode, f.payload) == (OP_PONG, b"tls ping"), f
        f = c.close_handshake(1000, b"bye")
        assert f.close_code == 1000
    text = h.wait_log(lambda t: "WebSocket closed after" in t, mark)
    assert "WebSocket engine: async" in text, text
    assert "WebSocket engine: sync" not in text, text


def test_wss_plugin_threads(tls_srv):
    """Sends from other threads reach a TLS connection: the dumb-increment
    ticker, and three probe threads at once."""
    h = tls_srv
    with wss(h, "/dumb-increment") as c:
        vals = [int(c.recv_text(timeout=3)) for _ in range(10)]
        assert vals == list(range(10))
        c.close_handshake(1000)
    with wss(h, "/probe") as c:
        c.send_text("multi:3:300")
        last = {}
        done = 0
        while done < 3:
            t = c.recv_text(timeout=10)
            m = re.fullmatch(r"t(\d) (\d+|done (\d+))", t)
            assert m, t
            if m.group(3):
                assert int(m.group(3)) == 300, t
                done += 1
                continue
            j, i = int(m.group(1)), int(m.group(2))
            assert i == last.get(j, -1) + 1, (t, last)
            last[j] = i
        assert last == {0: 299, 1: 299, 2: 299}
        c.close_handshake(1000)


def test_wss_slow_reader_gets_everything(tls_srv):
    """6.25 MiB queued for a TLS client that reads slowly: mod_ssl's
    non-blocking writes resume where the socket stopped taking data; every
    byte arrives in order and another TLS connection is served meanwhile."""
    h = tls_srv
    mark = h.mark()
    with wss(h, "/probe", rcvbuf=16384,
             headers=[("X-Conn-Id", "slowtls")]) as slow, wss(h) as other:
        slow.send_text("queue:65536:100")
        # All of it queued, and the socket full: the server's end holds
        # more than the client's receive buffer could take.
        h.expect_log("queue id=slowtls accepted=100 ", mark, "test")
        rcvbuf = slow.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        wait_for(lambda: server_send_queue(slow) > rcvbuf,
                 "the server's socket full (more than %d bytes in its send "
                 "queue)" % rcvbuf)
        for i in range(5):
            t = time.monotonic()
            echo(other, "meanwhile %d" % i)
            assert time.monotonic() - t < 0.5
        for i in range(100):
            op, data = slow.recv_message(timeout=10)
            assert op == OP_BINARY and len(data) == 65536, (i, op, len(data))
            assert int.from_bytes(data[:8], "little") == i
            assert data[8:] == b"q" * (65536 - 8)
            if i % 10 == 0:
                time.sleep(0.01)
        slow.close_handshake(1000)
        other.close_handshake(1000)


def test_wss_websockets_library(tls_srv):
    """An independent client over wss, with permessage-deflate."""
    websockets = pytest.importorskip("websockets")
    h = tls_srv

    async def main():
        async with websockets.connect(
                "wss://127.0.0.1:%d/echo" % h.tls_port, ssl=h.ssl_context(),
                compression="deflate", max_size=None) as ws:
            assert "permessage-deflate" in (
                ws.response_headers.get("Sec-WebSocket-Extensions") or "")
            await ws.send("compressed over TLS " * 100)
            assert await ws.recv() == "compressed over TLS " * 100
            blob = bytes(range(256)) * 4096
            await ws.send(blob)
            assert await ws.recv() == blob
        assert ws.close_code == 1000

    asyncio.run(asyncio.wait_for(main(), 30))


# ---- graceful restart while messages flow ------------------------------------

MPM_CONF = {
    "event": None,
    "worker": None,
    # Enough idle children for every client from the start.
    "prefork": """
StartServers 16
MinSpareServers 4
MaxSpareServers 32
ServerLimit 40
MaxRequestWorkers 40
MaxConnectionsPerChild 0
""",
}


def restart_conf(h):
    return (loc("/echo", h.echo_so, "echo_init")
            + loc("/dumb-increment", h.dumb_so, "dumb_increment_init")
            + loc("/probe", harness.test_plugin_so("probe"), "probe_init")
            + loc("/slow", harness.test_plugin_so("slow"), "slow_init",
                  "    WebSocketSlowPlugin Always\n")
            + "WebSocketCloseTimeout 1\n")


def apache_k(h, what):
    """`apache2 -f <conf> -k <what>`: the way an administrator does it."""
    p = subprocess.run([harness.APACHE, "-f", h.conf_path, "-k", what],
                       capture_output=True, text=True, env=h.env(),
                       timeout=60)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)


@pytest.mark.slow
@pytest.mark.parametrize("mpm", ["event", "worker", "prefork"])
def test_graceful_restart_under_load(make_httpd, mpm):
    """`apache2 -k graceful` while echo clients (ws and wss) exchange
    messages, plugin threads send (dumb-increment, probe drip), a slow
    plugin is in the middle of on_message and one client never answers:
    each WebSocket gets Close 1012 (Service Restart), the old children exit within
    GracefulShutdownTimeout (5 s), nothing crashes, and the new
    generation serves ws and wss."""
    h = make_httpd(restart_conf, mpm=mpm, mpm_conf=MPM_CONF[mpm], tls=True,
                   loglevel="warn websocket:debug")
    h.start()
    ctx = h.ssl_context()
    n_echo = 4 if mpm == "prefork" else 10
    clients = []

    def add(c):
        clients.append(c)
        return c

    try:
        echoers = [add(WSClient(h.port, "/echo")) for _ in range(n_echo)]
        echoers += [add(WSClient(h.tls_port, "/echo", tls=ctx))
                    for _ in range(2)]
        counters = [add(WSClient(h.port, "/dumb-increment"))
                    for _ in range(2)]
        drip = add(WSClient(h.port, "/probe", headers=[("X-Conn-Id",
                                                        "gdrip")]))
        slow = add(WSClient(h.port, "/slow"))
        silent = add(WSClient(h.port, "/echo"))
        echo(silent, "then silence")
        drip.send_text("drip")
        assert drip.recv_text(timeout=5) == "drip 0"
        for k in range(3):
            for i, c in enumerate(echoers):
                echo(c, "warm %d %d" % (k, i))
        engine = "async" if mpm == "event" else "sync"
        assert "WebSocket engine: %s" % engine in h.error_log()

        old = h.children()
        assert old
        before = h.generations()
        sleeping(h, slow, "sleep:800")
        t_sig = time.monotonic()
        apache_k(h, "graceful")

        # The echo clients keep talking until their Close comes.
        codes = {}
        pending = set(range(len(echoers)))
        k = 0
        while pending:
            assert time.monotonic() - t_sig < 10, (
                "no Close for %d echo clients" % len(pending))
            for i in sorted(pending):
                c = echoers[i]
                msg = b"r%d %d" % (k, i)
                c.send_text(msg)
                while True:
                    f = c.recv_frame(timeout=5)
                    if f.opcode == OP_TEXT:
                        assert f.payload == msg, (f, msg)
                        break
                    assert f.opcode == OP_CLOSE, f
                    codes[i] = (f.close_code, f.close_reason)
                    c.send_close(f.close_code)
                    c.expect_eof(5)
                    pending.discard(i)
                    break
            k += 1
            time.sleep(0.01)
        assert set(codes.values()) == {(1012, b"server restarting")}, codes
        took = time.monotonic() - t_sig
        assert took < 3, "the 1012s took %.1fs" % took

        for c in counters:
            last = -1
            while True:
                f = c.recv_frame(timeout=5)
                if f.opcode == OP_CLOSE:
                    assert f.close_code == 1012, f
                    c.send_close(1012)
                    c.expect_eof(5)
                    break
                assert f.opcode == OP_TEXT, f
                assert int(f.payload) == last + 1, (f, last)
                last = int(f.payload)
        for c in (drip, slow):
            # The slow plugin's echo may or may not precede the Close.
            c.expect_close(1012, timeout=5, allow_data=True, reply=True)

        h.wait_new_generation(before)
        with WSClient(h.port, "/echo") as c:
            echo(c, "new generation")
            c.close_handshake(1000)
        with WSClient(h.tls_port, "/echo", tls=ctx) as c:
            echo(c, "new generation over TLS")
            c.close_handshake(1000)

        # The silent client holds its old child until WebSocketCloseTimeout
        # (1 s) and a lingering close (2 s); then every old child is gone.
        gone = wait_until(lambda: not [p for p in old if alive(p)],
                          timeout=max(0.5, t_sig + 6.5 - time.monotonic()))
        assert gone, "old children %s still alive %.1fs after -k graceful" % (
            [p for p in old if alive(p)], time.monotonic() - t_sig)
        f = silent.recv_frame(timeout=5)
        assert f.opcode == OP_CLOSE and f.close_code == 1012, f
        silent.expect_eof(5)

        log = h.wait_log(lambda t: "disconnect id=gdrip " in t, None, "test")
        assert log.count("disconnect id=gdrip ") == 1, log
        assert h.running()
    finally:
        for c in clients:
            c.close()


# ---- Apache's timeouts, WebSocketIdleTimeout ----------------------------------

def timeouts_conf(h):
    return ("LoadModule reqtimeout_module %s/mod_reqtimeout.so\n"
            "RequestReadTimeout header=2 body=2\n" % harness.MODDIR
            + loc("/echo", h.echo_so, "echo_init")
            + loc("/idle", h.echo_so, "echo_init",
                  "    WebSocketIdleTimeout 2\n"))


def readable(c, wait=0.0):
    return bool(c.buf) or bool(select.select([c.sock], [], [], wait)[0])


@pytest.mark.slow
def test_timeouts_do_not_apply_idle_timeout_does(make_httpd):
    """Timeout 2, KeepAliveTimeout 2 and mod_reqtimeout (header=2 body=2)
    leave an open WebSocket alone: it still echoes after 4.5 s of silence.
    WebSocketIdleTimeout 2 closes a silent one with 1001 after about 2 s
    (and logs why), but not one that keeps talking."""
    h = make_httpd(timeouts_conf, timeout=2)
    h.start()
    quiet = WSClient(h.port, "/echo")
    idle = WSClient(h.port, "/idle")
    talker = WSClient(h.port, "/idle")
    try:
        for c in (quiet, idle, talker):
            echo(c, "hello")
        mark = h.mark()
        t0 = time.monotonic()
        idle_closed_at = None
        n = 0
        while time.monotonic() - t0 < 4.5:
            echo(talker, "still here %d" % n)
            n += 1
            if idle_closed_at is None and readable(idle, 0.4):
                idle_closed_at = time.monotonic() - t0
                f = idle.recv_frame(timeout=5)
                assert f.opcode == OP_CLOSE and f.close_code == 1001, f
                idle.send_close(1001)
                idle.expect_eof(5)
            elif idle_closed_at is not None:
                time.sleep(0.4)
        assert idle_closed_at is not None, "the idle socket was not closed"
        assert 1.7 <= idle_closed_at <= 3.5, idle_closed_at
        echo(quiet, "after 4.5s of silence")
        echo(talker, "and the talker too")
        text = h.wait_log(lambda t: "WebSocketIdleTimeout" in t, mark)
        lines = [l for l in text.splitlines() if "WebSocketIdleTimeout" in l]
        assert len(lines) == 1, text
        assert ":info]" in lines[0], lines[0]
        quiet.close_handshake(1000)
        talker.close_handshake(1000)
    finally:
        for c in (quiet, idle, talker):
            c.close()


# ---- lingering closes ------------------------------------------------------------

def test_lingering_close_does_not_stall_the_loop(make_httpd):
    """Clients that finish the closing handshake but keep TCP open (one
    silent, one still sending bytes) are in Apache's lingering close; with
    one event loop, another client's echoes still come back at once."""
    h = make_httpd(lambda h: "WebSocketEventThreads 1\n"
                   + loc("/echo", h.echo_so, "echo_init"))
    h.start()
    b = WSClient(h.port, "/echo")
    silent = WSClient(h.port, "/echo")
    talker = WSClient(h.port, "/echo")
    try:
        echo(b, "warm")
        for c in (silent, talker):
            echo(c, "before closing")
            c.send_close(1000)
            f = c.recv_frame(timeout=5)
            assert f.opcode == OP_CLOSE and f.close_code == 1000, f
        # The server ended its side after the handshake.
        assert silent.sock.recv(1) == b""
        lat = []
        end = time.monotonic() + 2.5
        while time.monotonic() < end:
            try:
                talker.sock.send(b"x")
            except OSError:
                pass                    # the server stopped lingering
            t = time.monotonic()
            echo(b, "ping %d" % len(lat))
            lat.append(time.monotonic() - t)
            time.sleep(0.03)
        assert max(lat) < 0.1, ["%.3f" % x for x in lat]
        b.close_handshake(1000)
    finally:
        for c in (b, silent, talker):
            c.close()


def server_socket_owned(server_port, client_port):
    """Whether the server's end of this TCP connection still belongs to a
    file descriptor (/proc/net/tcp: a closed socket that still finishes
    its FIN handshake in the kernel has inode 0), None once gone."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if (int(local.split(":")[1], 16) == server_port
                    and int(remote.split(":")[1], 16) == client_port):
                return fields[9] != "0"
    return None


def test_no_lingering_after_the_peers_close(make_httpd):
    """After the client's Close, nothing but its FIN may come: with
    nothing unread, the server closes its socket at once instead of
    lingering (2 s) for that FIN, which this client does not send."""
    h = make_httpd(lambda h: loc("/echo", h.echo_so, "echo_init"))
    h.start()
    c = WSClient(h.port, "/echo")
    try:
        client_port = c.sock.getsockname()[1]
        echo(c, "before closing")
        c.send_close(1000)
        f = c.recv_frame(timeout=5)
        assert f.opcode == OP_CLOSE and f.close_code == 1000, f
        assert c.sock.recv(1) == b""        # the server's FIN
        wait_for(lambda: not server_socket_owned(h.port, client_port),
                 "the server lets go of the socket before its 2 s linger",
                 timeout=1.5)
    finally:
        c.close()


# ---- the access log ----------------------------------------------------------------

def access_fence(h, mark):
    """A plain request on a connection of its own, once its access log
    line is written: the lines of requests that httpd finished before it
    was sent are in the log by then.  Returns the log since mark."""
    path = "/?fence=%d" % time.monotonic_ns()
    http_request(h.port, request_bytes(path, [
        ("Host", "127.0.0.1:%d" % h.port), ("Connection", "close")]))
    return h.expect_log('"GET %s HTTP/1.1" ' % path, mark, "access")


def check_access_log_duration(h, hold=1.5):
    """The line of a WebSocket request is written when the socket closes,
    with status 101 and a %D (microseconds) covering the whole connection
    (the client holds it open for `hold` seconds)."""
    path = "/echo?alog=%d" % (time.monotonic_ns())
    mark = h.mark()
    with WSClient(h.port, path) as c:
        t0 = time.monotonic()
        echo(c, "logged later")
        time.sleep(max(0.0, hold - (time.monotonic() - t0)))
        text = access_fence(h, mark)
        assert path not in text, (
            "access log written while the WebSocket is open:\n%s" % text)
        c.close_handshake(1000)
        held = time.monotonic() - t0
    text = h.wait_log(lambda t: path in t, mark, "access")
    lines = [l for l in text.splitlines() if path in l]
    assert len(lines) == 1, text
    m = re.search(r'"GET (\S+) HTTP/1.1" (\d{3}) \S+ (\d+)$', lines[0])
    assert m, lines[0]
    assert m.group(1) == path and m.group(2) == "101", lines[0]
    micros = int(m.group(3))
    assert micros >= (hold - 0.1) * 1e6, lines[0]
    assert micros <= (held + 5) * 1e6, (lines[0], held)


@pytest.mark.slow
def test_access_log_written_at_close_with_duration(srv):
    check_access_log_duration(srv)
