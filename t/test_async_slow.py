"""Slow plugins on the asynchronous engine: a plugin that blocks in
on_message must not stall the other sockets of its event loop.  One loop
per child (WebSocketEventThreads 1), so every connection shares it; the
slow test plugin sleeps in on_message when told "sleep:<ms>"."""

import os
import re
import time

import pytest

import harness
from wsraw import (WSClient, build_frame, close_payload, wait_for, OP_CLOSE,
                   OP_PING, OP_PONG, OP_TEXT)

WARNING = "its messages now run on the dispatch threads"
TAKEN_OVER = "a new thread serves its other connections"

ONE_CHILD = harness.ONE_CHILD


def slow_conf(h):
    so = harness.test_plugin_so("slow")
    out = ["WebSocketEventThreads 1\n"]
    # Each WebSocketHandler line is a plugin of its own: once one is found
    # slow, the others are not.
    for path, setting in (("/slow", None), ("/slow-always", "Always"),
                          ("/slow-off", "Off"), ("/slow-order", "Always"),
                          ("/slow-abort", "Always"), ("/slow-nap", None)):
        out.append("<Location %s>\n    SetHandler websocket-handler\n"
                   '    WebSocketHandler "%s" slow_init\n' % (path, so))
        if setting:
            out.append("    WebSocketSlowPlugin %s\n" % setting)
        out.append("</Location>\n")
    out.append("<Location /probe-always>\n    SetHandler websocket-handler\n"
               '    WebSocketHandler "%s" probe_init\n'
               "    WebSocketSlowPlugin Always\n</Location>\n"
               % harness.test_plugin_so("probe"))
    return "".join(out)


@pytest.fixture(scope="module")
def slow_srv():
    from conftest import serve
    yield from serve(slow_conf, mpm_conf=ONE_CHILD,
                     loglevel="warn websocket:debug")


def latency(c, text, timeout=5):
    t = time.monotonic()
    c.send_text(text)
    got = c.recv_text(timeout=timeout)
    took = time.monotonic() - t
    assert got == text, (got, text)
    return took


def latencies_for(c, seconds, prefix="b"):
    """Echo round trips of c, one every 20 ms or so, for `seconds`."""
    out = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        out.append(latency(c, "%s%d" % (prefix, len(out))))
        time.sleep(0.02)
    return out


def sleeping(h, c, text):
    """Sends c the command `text` (sleep:<ms>...) and returns once the slow
    plugin's on_message for it is under way (its "begin" line)."""
    mark = h.mark()
    c.send_text(text)
    line = re.compile(r"^begin \d+ %s$" % re.escape(text), re.M)
    h.expect_log(lambda t: line.search(t), mark, "test")


def pair(h, path):
    a = WSClient(h.port, path)
    try:
        b = WSClient(h.port, path)
    except BaseException:
        a.close()
        raise
    return a, b


def test_engine_is_async(slow_srv):
    mark = slow_srv.mark()
    with WSClient(slow_srv.port, "/slow-off") as c:
        assert latency(c, "hello") < 1
        c.close_handshake(1000)
    text = slow_srv.wait_log(lambda t: "WebSocket engine:" in t, mark)
    assert "WebSocket engine: async" in text, text


def test_slow_plugin_detected_then_dispatched(slow_srv):
    """The first slow call runs on the loop; it is detected and logged,
    and a new thread takes the loop over, so even during that first call
    B (same plugin, same loop) is answered within a few tens of ms; from
    then on the plugin's messages run on the dispatch threads, and A's
    replies keep their order."""
    h = slow_srv
    a, b = pair(h, "/slow")
    try:
        assert latency(b, "warm") < 0.1
        mark = h.mark()
        sleeping(h, a, "sleep:300")
        first = latency(b, "during the first sleep")
        assert a.recv_text() == "sleep:300"
        # The first call is inline, but the loop did not wait for it: it
        # was taken over (before, B waited ~270 ms here).
        assert first < 0.15, "B was answered in %.3fs" % first
        text = h.wait_log(lambda t: TAKEN_OVER in t, mark)
        assert "on_message of plugin slow_init" in text, text
        text = h.wait_log(lambda t: WARNING in t, mark)
        lines = [l for l in text.splitlines() if WARNING in l]
        assert len(lines) == 1, text
        assert "slow_init" in lines[0] and "WebSocketSlowPlugin" in lines[0]
        assert ":warn]" in lines[0], lines[0]

        a.send_raw(b"".join(build_frame(OP_TEXT, "sleep:300 #%d" % i)
                            for i in range(3)))
        lat = latencies_for(b, 1.0)
        assert max(lat) < 0.1, "B stalled while A's plugin slept: %s" % (
            ["%.3f" % x for x in lat])
        assert [a.recv_text(timeout=5) for _ in range(3)] == [
            "sleep:300 #%d" % i for i in range(3)]

        # Messages behind a slow one wait for it: the order holds.
        a.send_raw(build_frame(OP_TEXT, "sleep:100") + build_frame(OP_TEXT, "x")
                   + build_frame(OP_TEXT, "y"))
        assert [a.recv_text(timeout=5) for _ in range(3)] == [
            "sleep:100", "x", "y"]
        # Logged once per plugin, not per message.
        assert h.since(mark).count(WARNING) == 1
        a.close_handshake(1000)
        b.close_handshake(1000)
    finally:
        a.close()
        b.close()


def context_switches(pid):
    """Voluntary context switches of all threads of a process: each is a
    sleep that ended."""
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        total += int(line.split()[1])
        except OSError:
            pass                      # a thread that ended meanwhile
    return total


def test_idle_child_sleeps_and_a_slow_call_still_wakes_the_watchdog(
        slow_srv):
    """With no plugin call running, the child's threads stay asleep (the
    watchdog used to wake 100 times a second, with or without calls to
    watch); the first call after that wakes the watchdog, which still
    catches a plugin that blocks within tens of ms."""
    h = slow_srv
    child, = h.children()
    a, b = pair(h, "/slow-nap")
    try:
        assert latency(b, "warm") < 0.1

        def quiet():
            before = context_switches(child)
            time.sleep(1.0)
            return context_switches(child) - before < 20
        wait_for(quiet, "a child with no plugin call left asleep",
                 timeout=15)
        mark = h.mark()
        sleeping(h, a, "sleep:300")
        first = latency(b, "during the first sleep after a nap")
        assert a.recv_text() == "sleep:300"
        assert first < 0.15, "B was answered in %.3fs" % first
        h.wait_log(lambda t: TAKEN_OVER in t, mark)
        a.close_handshake(1000)
        b.close_handshake(1000)
    finally:
        a.close()
        b.close()


def test_slow_plugin_always_dispatched(slow_srv):
    """WebSocketSlowPlugin Always: not even the first call stalls the loop."""
    a, b = pair(slow_srv, "/slow-always")
    try:
        assert latency(b, "warm") < 0.1
        sleeping(slow_srv, a, "sleep:300")
        lat = latencies_for(b, 0.5)
        assert max(lat) < 0.1, ["%.3f" % x for x in lat]
        assert a.recv_text(timeout=5) == "sleep:300"
        a.close_handshake(1000)
        b.close_handshake(1000)
    finally:
        a.close()
        b.close()


def test_dispatched_connections_run_in_parallel(slow_srv):
    """Two connections whose messages both sleep run on two dispatch
    threads at once: B's slow message does not wait behind A's (a thread
    pool that counted a thread as idle until it took a task let it wait:
    a real bug, seen under ASan)."""
    a, b = pair(slow_srv, "/slow-always")
    try:
        for _ in range(3):
            t = time.monotonic()
            sleeping(slow_srv, a, "sleep:300")
            b.send_text("sleep:300")
            assert a.recv_text(timeout=5) == "sleep:300"
            assert b.recv_text(timeout=5) == "sleep:300"
            took = time.monotonic() - t
            assert took < 0.5, "the two sleeps ran one after the other: " \
                               "%.3fs" % took
        a.close_handshake(1000)
        b.close_handshake(1000)
    finally:
        a.close()
        b.close()


def test_slow_plugin_off_stalls_the_loop(slow_srv):
    """WebSocketSlowPlugin Off: the plugin stays on the loop, every time:
    while it sleeps, B on the same loop waits (what the other settings
    prevent)."""
    a, b = pair(slow_srv, "/slow-off")
    try:
        assert latency(b, "warm") < 0.1
        for i in range(2):
            sleeping(slow_srv, a, "sleep:500")
            stalled = latency(b, "stalled %d" % i)
            assert stalled > 0.25, "B answered in %.3fs" % stalled
            assert a.recv_text(timeout=5) == "sleep:500"
        a.close_handshake(1000)
        b.close_handshake(1000)
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("after", ["text", "ping", "reserved-opcode",
                                   "bad-utf8", "close"])
def test_wire_order_behind_dispatched_message(slow_srv, after):
    """What follows a dispatched message in the same write is handled only
    after the plugin returns: its echo comes first, then the answer to
    what followed (an echo, a pong, the close code of an error, the
    closing handshake)."""
    with WSClient(slow_srv.port, "/slow-order") as c:
        first = build_frame(OP_TEXT, "sleep:200")
        if after == "text":
            c.send_raw(first + build_frame(OP_TEXT, "next"))
            assert c.recv_text(timeout=5) == "sleep:200"
            assert c.recv_text(timeout=5) == "next"
            c.close_handshake(1000)
            return
        if after == "ping":
            c.send_raw(first + build_frame(OP_PING, b"p"))
            assert c.recv_text(timeout=5) == "sleep:200"
            f = c.recv_frame(timeout=5)
            assert (f.opcode, f.payload) == (OP_PONG, b"p"), f
            c.close_handshake(1000)
            return
        if after == "close":
            c.send_raw(first + build_frame(OP_CLOSE, close_payload(1000)))
            assert c.recv_text(timeout=5) == "sleep:200"
            c.expect_close(1000, timeout=5)
            return
        bad, code = {"reserved-opcode": (build_frame(0x3, b""), 1002),
                     "bad-utf8": (build_frame(OP_TEXT, b"\xff"), 1007)}[after]
        c.send_raw(first + bad)
        assert c.recv_text(timeout=5) == "sleep:200"
        c.expect_close(code, timeout=5)


def test_client_gone_while_plugin_dispatched(slow_srv):
    """A client that drops TCP while its message is on a dispatch thread:
    the plugin returns into a connection that is ending, without a crash,
    and the loop keeps serving."""
    a, b = pair(slow_srv, "/slow-abort")
    try:
        sleeping(slow_srv, a, "sleep:300")
        a.abort()
        lat = latencies_for(b, 0.6)
        assert max(lat) < 0.1, ["%.3f" % x for x in lat]
        b.close_handshake(1000)
    finally:
        a.close()
        b.close()


def test_a_burst_sent_from_a_dispatch_thread_reaches_a_slow_reader(slow_srv):
    """A plugin on the dispatch threads sends 10 MiB at once from
    on_message to a client that reads slowly: the loop writes it all as
    the client makes room (it used to stop after the first socket-full,
    when the plugin had been found slow: ASan on a loaded machine)."""
    with WSClient(slow_srv.port, "/probe-always?burst",
                  headers=[("X-Conn-Id", "burst")], rcvbuf=32768) as c:
        c.send_text("queue:262144:40")
        for i in range(40):
            op, data = c.recv_message(timeout=10)
            assert int.from_bytes(data[:8], "little") == i
        c.close_handshake(1000)
