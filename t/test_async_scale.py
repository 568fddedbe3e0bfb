"""The asynchronous engine at scale (event MPM): thousands of idle
WebSockets on a child of 4 worker threads, a plugin thread broadcasting to
hundreds of connections, and a client that never reads while a plugin
floods it."""

import os
import re
import time

import pytest

import harness
from wsraw import (WSClient, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT,
                   http_request, open_many, request_bytes, tcp_table,
                   wait_until)

pytestmark = pytest.mark.slow

# One child process with 4 worker threads; suspended WebSockets count
# against the child's capacity (ThreadsPerChild + idle workers x factor).
ONE_CHILD_4_THREADS = harness.one_child(4)

ONE_CHILD = harness.ONE_CHILD


def loc(path, so, init, extra=""):
    return ("<Location %s>\n    SetHandler websocket-handler\n"
            '    WebSocketHandler "%s" %s\n%s</Location>\n'
            % (path, so, init, extra))


def status_field(pid, name):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s in /proc/%d/status" % (name, pid))


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def only_child(h):
    """The pid of the server's single child process."""
    kids = wait_until(lambda: h.children(), timeout=10)
    assert len(kids) == 1, "expected one child, got %s" % kids
    return kids[0]


def socket_inodes(pid):
    """The inodes of the sockets the process has open."""
    out = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            out.add(link[len("socket:["):-1])
    return out


def thread_ids(pid):
    """The ids of the process's threads.  Compared as sets, not counted:
    the MPM starts its threads from a thread that then exits, so a count
    taken early may include it; a thread added later has a new id."""
    return set(os.listdir("/proc/%d/task" % pid))


def threads_added(pid, before):
    return sorted(thread_ids(pid) - before)


def write_index(h, body=b"<html>static</html>\n"):
    path = os.path.join(h.docroot, "index.html")
    with open(path, "wb") as f:
        f.write(body)
    os.chmod(path, 0o644)
    return body


def close_all(clients):
    for c in clients:
        c.close()


# ---- 2,000 idle WebSockets on 4 worker threads --------------------------------

N_IDLE = 2000


def test_2000_websockets_on_4_worker_threads(make_httpd):
    """2,000 WebSockets stay open on a child with 4 worker threads: the
    workers are free for plain HTTP, no thread is added, every socket still
    echoes, and all of them close cleanly and give their descriptors back."""
    h = make_httpd(lambda h: loc("/echo", h.echo_so, "echo_init"),
                   mpm_conf=ONE_CHILD_4_THREADS,
                   loglevel="warn websocket:info")
    body = write_index(h)
    h.start()
    child = only_child(h)
    threads_before = thread_ids(child)
    fds_before = open_fds(child)

    t0 = time.monotonic()
    clients = open_many(h.port, "/echo", N_IDLE, batch=200, timeout=20)
    try:
        opened = time.monotonic() - t0
        assert len(clients) == N_IDLE
        # Every one of them is served (by the loops, not a worker each).
        for i, c in enumerate(clients):
            c.send_frame(OP_PING, b"%d" % i)
        for i, c in enumerate(clients):
            f = c.recv_frame(timeout=10)
            assert (f.opcode, f.payload) == (OP_PONG, b"%d" % i), (i, f)
        assert h.children() == [child], "another child was started"

        # The 4 workers are not held by the WebSockets.
        t1 = time.monotonic()
        r = http_request(h.port, request_bytes("/index.html", [
            ("Host", "127.0.0.1:%d" % h.port), ("Connection", "close")]),
            timeout=2)
        took = time.monotonic() - t1
        assert r.status == 200 and r.body == body, r
        assert took < 2.0, "static GET took %.2fs" % took

        assert not threads_added(child, threads_before), (
            "threads added: %s" % threads_added(child, threads_before))
        # The child holds the socket of every WebSocket (counted by inode:
        # a total of descriptors would count the harness's probe too).
        ports = {c.sock.getsockname()[1] for c in clients}
        ws_inodes = {inode for local, remote, _, inode in tcp_table()
                     if local == h.port and remote in ports}
        held = len(socket_inodes(child) & ws_inodes)
        assert held == N_IDLE, "the child holds %d of the %d sockets" % (
            held, N_IDLE)

        for i, c in enumerate(clients):
            c.send_text("msg %d" % i)
        for i, c in enumerate(clients):
            assert c.recv_message(timeout=10) == (OP_TEXT, b"msg %d" % i), i

        # Every one completes the closing handshake.
        for c in clients:
            c.send_close(1000)
        for i, c in enumerate(clients):
            f = c.recv_frame(timeout=10)
            assert f.opcode == OP_CLOSE and f.close_code == 1000, (i, f)
            c.expect_eof(10)
    finally:
        close_all(clients)
    assert not threads_added(child, threads_before)
    # The loops give every connection back (pool destroyed, socket closed).
    assert wait_until(lambda: open_fds(child) <= fds_before + 5,
                      timeout=10), (
        "descriptors not released: %d before, %d after"
        % (fds_before, open_fds(child)))
    assert opened < 30, "opening %d WebSockets took %.1fs" % (N_IDLE, opened)


# ---- broadcasting from a plugin thread ----------------------------------------

N_BROADCAST = 200


def recv_tagged(c, tags, n, timeout=10):
    """Reads c's messages until "<tag> end" of each tag; returns {tag:
    [numbers in arrival order]}; any other message is a failure."""
    got = {t: [] for t in tags}
    ended = set()
    while len(ended) < len(tags):
        op, data = c.recv_message(timeout=timeout)
        assert op == OP_TEXT, (op, data[:60])
        text = data.decode()
        tag, _, rest = text.partition(" ")
        assert tag in got, text[:80]
        assert tag not in ended, "after the end of %s: %r" % (tag, text[:80])
        if rest == "end":
            ended.add(tag)
            continue
        num, _, pad = rest.partition(".")
        got[tag].append(int(num))
    return got


def test_broadcast_thread_reaches_every_connection_in_order(make_httpd):
    """A plugin thread sends two interleaved numbered streams to 200
    connections: every client gets every message of each stream, in
    order, none missing, none twice."""
    h = make_httpd(lambda h: loc("/broadcast",
                                 harness.test_plugin_so("broadcast"),
                                 "broadcast_init"),
                   mpm_conf=ONE_CHILD)
    h.start()
    clients = open_many(h.port, "/broadcast", N_BROADCAST)
    try:
        clients[0].send_text("count")
        assert clients[0].recv_text() == "count %d" % N_BROADCAST
        n = 300
        clients[0].send_text("go:alpha:%d:100" % n)
        clients[-1].send_text("go:beta:%d" % n)
        for i, c in enumerate(clients):
            got = recv_tagged(c, ("alpha", "beta"), n)
            for tag, nums in got.items():
                assert nums == list(range(n)), (
                    "client %d, %s: %d messages, first wrong at %s" % (
                        i, tag, len(nums),
                        next((k for k, v in enumerate(nums) if v != k),
                             len(nums))))
        for c in clients:
            c.send_close(1000)
        for c in clients:
            c.expect_close(1000, timeout=10)
    finally:
        close_all(clients)


# ---- a client that never reads -------------------------------------------------

def vm_rss_kb(pid):
    return status_field(pid, "VmRSS")


def test_flooded_reader_cut_off_others_unaffected(make_httpd):
    """A client that never reads while the plugin sends it 64 KiB messages
    as fast as it can: with WebSocketSendQueueLimit 256K the send that
    would exceed it fails, the connection is closed with 1008 and one info
    line says why; meanwhile the other connections, on the same
    plugin and elsewhere, keep answering within a fraction of a second,
    and the child's memory stays bounded (the plugin would have queued
    250 MiB)."""
    h = make_httpd(lambda h: (
        loc("/flood", harness.test_plugin_so("broadcast"), "broadcast_init",
            "    WebSocketSendQueueLimit 256K\n"
            "    WebSocketCloseTimeout 1\n")
        # The same plugin under the default limit, for the warm-up.
        + loc("/flood-warm", harness.test_plugin_so("broadcast"),
              "broadcast_init")
        + loc("/echo", h.echo_so, "echo_init")),
        mpm_conf=ONE_CHILD)
    h.start()
    child = only_child(h)
    good = [WSClient(h.port, "/echo") for _ in range(8)]
    good += [WSClient(h.port, "/flood", headers=[("X-Conn-Id", "good%d" % i)])
             for i in range(4)]
    bad = None
    try:
        # Warm up: one reader takes a flood whole (the same allocations).
        with WSClient(h.port, "/flood-warm",
                      headers=[("X-Conn-Id", "warm")]) as w:
            w.send_text("flood:65536:40")
            for i in range(40):
                op, data = w.recv_message(timeout=10)
                assert op == OP_BINARY and len(data) == 65536
                assert int.from_bytes(data[:8], "little") == i
            w.close_handshake(1000)
        rss_before = vm_rss_kb(child)

        mark = h.mark()
        bad = WSClient(h.port, "/flood", headers=[("X-Conn-Id", "bad")],
                       rcvbuf=4096)
        count = 4000                                  # 250 MiB
        bad.send_text("flood:65536:%d" % count)
        worst, rounds, rss_max = 0.0, 0, rss_before
        end = time.monotonic() + 1.5
        while True:
            for i, c in enumerate(good):
                t = time.monotonic()
                c.send_text("ping %d %d" % (rounds, i))
                assert c.recv_text(timeout=5) == "ping %d %d" % (rounds, i)
                worst = max(worst, time.monotonic() - t)
            rounds += 1
            rss_max = max(rss_max, vm_rss_kb(child))
            done = ("flood id=bad " in h.since(mark, "test")
                    and "WebSocketSendQueueLimit" in h.since(mark))
            if done and time.monotonic() > end:
                break
            assert time.monotonic() < end + 10, (
                "no flood result / error line:\n%s\n%s"
                % (h.since(mark, "test"), h.since(mark)))
            time.sleep(0.02)
        assert worst < 0.5, "an echo took %.3fs during the flood" % worst

        log = h.since(mark, "test")
        m = re.search(r"flood id=bad accepted=(\d+) first_reject=(-?\d+) "
                      r"ms=(\d+)", log)
        assert m, log
        accepted, first_reject, ms = map(int, m.groups())
        assert first_reject == accepted, log
        assert accepted * 65536 < 30 * 1024 * 1024, (
            "%d messages queued for a reader that reads nothing" % accepted)
        assert ms < 2000, "send() blocked: %d ms" % ms
        err = h.since(mark)
        lines = [l for l in err.splitlines() if "WebSocketSendQueueLimit" in l]
        assert len(lines) == 1 and "[websocket:info]" in lines[0], err

        grown = vm_rss_kb(child) - rss_before
        grown_max = rss_max - rss_before
        assert max(grown, grown_max) < 30 * 1024, (
            "child RSS grew by %d kB" % max(grown, grown_max))

        # Now the flooded client reads: what was queued (in order), then
        # Close 1008 -- or, the close timeout having passed with its
        # buffer full, the end of TCP.
        bad.settimeout(10)
        seen, end_by = 0, None
        while True:
            try:
                f = bad.recv_frame()
            except (EOFError, ConnectionResetError) as e:
                end_by = type(e).__name__
                break
            if f.opcode == OP_CLOSE:
                assert f.close_code == 1008, f
                assert f.close_reason == b"send queue limit exceeded", f
                end_by = "close"
                break
            assert f.opcode == OP_BINARY and len(f.payload) == 65536, f
            assert int.from_bytes(f.payload[:8], "little") == seen
            seen += 1
        assert seen <= accepted, (seen, accepted)
        if end_by == "close":
            assert seen == accepted, (seen, accepted)
        assert wait_until(lambda: "disconnect id=bad " in h.since(mark,
                                                                  "test"),
                          timeout=10), h.since(mark, "test")

        # Still serving, on the flood location too.
        for c in good:
            c.send_text("after")
            assert c.recv_text() == "after"
            c.close_handshake(1000)
    finally:
        close_all(good)
        if bad is not None:
            bad.close()
