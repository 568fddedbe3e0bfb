"""Server lifecycle: graceful restart, stop, plugin destroy, the other
MPMs, and `harness.py run`."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

import harness
from wsraw import WSClient, OP_TEXT, OP_BINARY, OP_CLOSE, wait_until


def probe_conf(h):
    return ("<Location /probe>\n    SetHandler websocket-handler\n"
            '    WebSocketHandler "%s" probe_init\n</Location>\n'
            "<Location /echo>\n    SetHandler websocket-handler\n"
            '    WebSocketHandler "%s" echo_init\n</Location>\n'
            "<Location /dumb-increment>\n    SetHandler websocket-handler\n"
            '    WebSocketHandler "%s" dumb_increment_init\n</Location>\n'
            % (harness.test_plugin_so("probe"), h.echo_so, h.dumb_so))


def parent_events(h, pid=None):
    """The parent's init/destroy lines as [(event, plugin pointer)]."""
    pid = pid or h.pid
    return re.findall(r"^(init|destroy) pid=%d plugin=(\S+)" % pid,
                      h.test_log(), re.M)


def check_alternating(events):
    """init, destroy of that plugin, init, ...: each configuration's plugin
    is destroyed exactly once, before the next one is made."""
    for i, (ev, ptr) in enumerate(events):
        assert ev == ("init" if i % 2 == 0 else "destroy"), events
        if ev == "destroy":
            assert ptr == events[i - 1][1], events


def test_destroy_once_per_configuration(make_httpd):
    h = make_httpd(probe_conf)
    h.start()
    pid = h.pid
    ev = parent_events(h)
    check_alternating(ev)
    assert ev and ev[-1][0] == "init", ev       # the live configuration
    n = len(ev)

    h.graceful()
    end = time.monotonic() + 10
    while time.monotonic() < end and len(parent_events(h)) < n + 2:
        time.sleep(0.05)
    ev = parent_events(h)
    check_alternating(ev)
    assert len(ev) == n + 2 and ev[-1][0] == "init", ev
    # Still serving with the new configuration.
    with WSClient(h.port, "/probe") as c:
        c.send_text("x")
        assert c.recv_text() == "x"
        c.close_handshake(1000)

    h.stop()
    ev = parent_events(h, pid)
    check_alternating(ev)
    assert len(ev) == n + 3 and ev[-1][0] == "destroy", ev


@pytest.mark.parametrize("mpm", ["event", "worker"])
def test_graceful_restart_closes_old_connections_1001(make_httpd, mpm):
    """A graceful restart stops the old generation's children: their
    WebSockets get Close 1001 (going away); new connections are served by
    the new generation."""
    h = make_httpd(probe_conf, mpm=mpm)
    h.start()
    old = WSClient(h.port, "/probe?old", headers=[("X-Conn-Id", "old")])
    try:
        old.send_text("before")
        assert old.recv_text() == "before"
        mark = h.mark()
        h.graceful()
        with WSClient(h.port, "/probe") as new:
            new.send_text("new generation")
            assert new.recv_text() == "new generation"
            new.close_handshake(1000)
        f = old.recv_frame(timeout=10)
        assert f.opcode == OP_CLOSE and f.close_code == 1001, f
        old.send_close(1001)
        old.expect_eof(5)
        # Its access log line is written once the WebSocket is over: no
        # on_disconnect can follow.
        h.expect_log('"GET /probe?old HTTP/1.1" 101', mark, "access")
        text = h.since(mark, "test")
        assert text.count("disconnect id=old ") == 1, text
    finally:
        old.close()


@pytest.mark.parametrize("mpm", ["event", "worker", "prefork"])
def test_stop_with_open_connections(make_httpd, mpm):
    """A hard stop (SIGTERM) with WebSockets open, one of them with a
    plugin thread sending: every on_disconnect runs exactly once and no
    child crashes.  (On prefork the child exits from its signal handler:
    before, on_disconnect never ran there and the plugin's thread crashed
    the exiting child.)"""
    h = make_httpd(probe_conf, mpm=mpm)
    h.start()
    clients = [WSClient(h.port, "/dumb-increment") for _ in range(3)]
    clients.append(WSClient(h.port, "/probe",
                            headers=[("X-Conn-Id", "atstop")]))
    try:
        for c in clients[:3]:
            op, data = c.recv_message(timeout=3)
            assert data == b"0"
        clients[3].send_text("drip")
        assert clients[3].recv_text() == "drip 0"
        t0 = time.monotonic()
        h.stop(timeout=15)
        assert time.monotonic() - t0 < 12
        for c in clients:
            # A hard stop may kill the children before they can send a
            # Close; if one comes it is 1001.  TCP ends either way.
            c.settimeout(5)
            while True:
                try:
                    f = c.recv_frame()
                except (EOFError, ConnectionResetError):
                    break
                if f.opcode == OP_CLOSE:
                    assert f.close_code == 1001, f
        # The children have exited: every on_disconnect has run.
        assert h.test_log().count("disconnect id=atstop ") == 1, \
            h.test_log()
    finally:
        for c in clients:
            c.close()


def v2_conf(h):
    return ("<Location /v2>\n    SetHandler websocket-handler\n"
            '    WebSocketHandler "%s" v2probe_init\n</Location>\n'
            % harness.test_plugin_so("v2probe"))


@pytest.mark.parametrize("mpm", ["event", "worker", "prefork"])
def test_hard_stop_while_closing_runs_on_disconnect(make_httpd, mpm):
    """A hard stop while a WebSocket waits for the client's answer to the
    server's Close: its on_disconnect still runs, once.  (On prefork the
    child's signal handler skipped a connection whose Close was queued:
    on_disconnect never ran, and a plugin thread still sending to it
    crashed the exiting child, as CI saw with dumb-increment.)"""
    h = make_httpd(v2_conf, mpm=mpm)
    h.start()
    c = WSClient(h.port, "/v2", headers=[("X-Conn-Id", "closing")])
    try:
        c.send_text("closewith:1000:bye")
        f = c.recv_frame(timeout=5)
        while f.opcode != OP_CLOSE:
            f = c.recv_frame(timeout=5)
        assert f.close_code == 1000
        # No answer: the server waits for it (WebSocketCloseTimeout).
        h.stop(timeout=15)
        assert h.test_log().count("v2 disconnect closing") == 1, h.test_log()
    finally:
        c.close()


def blocked_signals(pid, tid):
    with open("/proc/%d/task/%d/status" % (pid, tid)) as f:
        for line in f:
            if line.startswith("SigBlk:"):
                return int(line.split()[1], 16)
    return 0


@pytest.mark.parametrize("mpm", ["event", "prefork"])
def test_threads_never_take_the_childs_signals(make_httpd, mpm):
    """Every thread of a child but its main one blocks SIGTERM: ours (the
    topics' reader) and those a plugin starts (here v2probe's resumer,
    started in on_message).  A signal httpd sends to a prefork child went
    to any thread that did not block it: CI saw dumb-increment's ticker
    run prefork's exit handler while the main thread ran it too, and the
    child crashed."""
    h = make_httpd(v2_conf, mpm=mpm)
    h.start()
    c = WSClient(h.port, "/v2", headers=[("X-Conn-Id", "sig")])
    try:
        c.send_text("info")
        pid = int(re.search(r"pid=(\d+)", c.recv_text(timeout=5)).group(1))
        c.send_text("pause:5000")
        assert wait_until(lambda: "v2 paused sig" in h.test_log())
        tids = [int(t) for t in os.listdir("/proc/%d/task" % pid)]
        others = [t for t in tids if t != pid]
        assert len(others) >= 2, tids          # the reader, the resumer
        sigterm = 1 << (signal.SIGTERM - 1)
        unblocked = [t for t in others if not blocked_signals(pid, t) & sigterm]
        assert not unblocked, (pid, tids, unblocked)
    finally:
        c.close()


@pytest.mark.parametrize("mpm", ["event", "worker"])
def test_graceful_stop_sends_1001(make_httpd, mpm):
    """apache2 -k graceful-stop: each open WebSocket gets Close 1001, the
    client's answer ends it at once, the plugin's on_disconnect runs once,
    httpd exits."""
    h = make_httpd(probe_conf, mpm=mpm)
    h.start()
    clients = [WSClient(h.port, "/probe", headers=[("X-Conn-Id", "gs%d" % i)])
               for i in range(3)]
    clients.append(WSClient(h.port, "/dumb-increment"))
    try:
        for c in clients[:3]:
            c.send_text("hi")
            assert c.recv_text() == "hi"
        assert clients[3].recv_text(timeout=3) == "0"
        mark = h.mark()
        os.kill(h.pid, signal.SIGWINCH)
        for c in clients:
            f = c.expect_close(1001, timeout=4, allow_data=True, reply=True)
            assert f.close_code == 1001
        h.proc.wait(10)
        log = h.since(mark, "test")
        for i in range(3):
            assert log.count("disconnect id=gs%d " % i) == 1, log
    finally:
        for c in clients:
            c.close()


# ---- other MPMs -------------------------------------------------------------

@pytest.fixture(scope="module", params=["prefork", "worker"])
def mpm_srv(request):
    from conftest import serve
    yield from serve(probe_conf, mpm=request.param)


def test_mpm_echo_and_errors(mpm_srv):
    with WSClient(mpm_srv.port, "/echo") as c:
        data = os.urandom(200000)
        c.send_binary(data)
        assert c.recv_message() == (OP_BINARY, data)
        c.send_frame(OP_TEXT, b"\xff")
        c.expect_close(1007)
    with WSClient(mpm_srv.port, "/echo") as c:
        c.close_handshake(4001)


def test_mpm_dumb_increment(mpm_srv):
    with WSClient(mpm_srv.port, "/dumb-increment") as c:
        vals = [int(c.recv_message(timeout=3)[1]) for _ in range(6)]
        assert vals == list(range(6))
        c.close_handshake(1000)


def test_mpm_threads_and_disconnect(mpm_srv):
    mark = mpm_srv.mark()
    with WSClient(mpm_srv.port, "/probe?mpm",
                  headers=[("X-Conn-Id", "mpm")]) as c:
        c.send_text("multi:3:100")
        got = 0
        while got < 303:
            assert re.fullmatch(r"t\d (\d+|done 100)", c.recv_text())
            got += 1
        c.close_handshake(1000)
    mpm_srv.expect_log('"GET /probe?mpm HTTP/1.1" 101', mark, "access")
    text = mpm_srv.since(mark, "test")
    assert text.count("disconnect id=mpm ") == 1, text


def test_mpm_concurrent_connections(mpm_srv):
    clients = [WSClient(mpm_srv.port, "/echo") for _ in range(6)]
    try:
        for i, c in enumerate(clients):
            c.send_text("c%d" % i)
        for i, c in enumerate(clients):
            assert c.recv_text() == "c%d" % i
            c.close_handshake(1000)
    finally:
        for c in clients:
            c.close()


# ---- make run ---------------------------------------------------------------

def descendants(pid):
    out, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % d) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == parent:
                out.append(int(d))
                todo.append(int(d))
    return out


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_harness_run_cli():
    from conftest import require_build
    require_build()
    port = harness.free_port()
    p = subprocess.Popen([sys.executable, os.path.join(harness.T_DIR,
                                                       "harness.py"),
                          "run", "--port", str(port)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, start_new_session=True)
    procs = []
    try:
        line = p.stdout.readline()
        assert "http://127.0.0.1:%d/" % port in line, line
        procs = descendants(p.pid)
        assert procs, "no httpd under harness.py run"
        with WSClient(port, "/echo") as c:
            c.send_text("cli")
            assert c.recv_text() == "cli"
            c.close_handshake(1000)
        with WSClient(port, "/dumb-increment") as c:
            assert c.recv_text(timeout=3) == "0"
            c.close_handshake(1000)
        p.send_signal(signal.SIGTERM)
        rc = p.wait(30)
        out = p.stdout.read()
        assert rc == 0, out
        left = [pid for pid in procs if alive(pid)]
        assert not left, "processes of `harness.py run` survived: %s" % left
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for pid in procs:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
