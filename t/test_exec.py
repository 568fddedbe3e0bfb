"""The exec plugin (plugins/exec.c): one program per WebSocket, its stdout
made messages, the client's messages written to its stdin, its stderr in
the error log; its environment, its end (close codes, grace periods,
SIGTERM, SIGKILL, no zombies), back-pressure both ways, the process limit
across children, restarts and stops.  The programs are shell and Python
scripts written into each server's root."""

import json
import os
import signal
import socket
import time

import pytest

import harness
from wsraw import (WSClient, OP_BINARY, OP_CLOSE, OP_TEXT, WSError,
                   handshake, open_many, server_send_queue, wait_for,
                   wait_until)

# ---- programs ---------------------------------------------------------------

PROGRAMS = {
    # Everything the program sees, as one JSON line; then it exits.
    "env.py": r"""#!/usr/bin/python3
import json, os, sys
fds = []
for fd in range(0, 256):
    try:
        os.fstat(fd)
        fds.append(fd)
    except OSError:
        pass
# As the program was given it (Python adds LC_CTYPE to os.environ).
with open("/proc/self/environ", "rb") as f:
    env = dict(v.decode().split("=", 1) for v in f.read().split(b"\0") if v)
print(json.dumps({"env": env, "uid": os.getuid(),
                  "cwd": os.getcwd(), "fds": fds, "argv": sys.argv,
                  "sid": os.getsid(0), "pid": os.getpid()}), flush=True)
""",
    # Lines both ways, and commands for the odd cases.
    "lines.py": r"""#!/usr/bin/python3
import os, sys
out = sys.stdout.buffer
out.write(b"ready %d\n" % os.getpid())
out.flush()
for line in sys.stdin.buffer:
    line = line.rstrip(b"\n")
    if line == b"quit":
        break
    elif line == b"bad-utf8":
        out.write(b"a\xffb\xc3\x28c\xed\xa0\x80d\n")
    elif line.startswith(b"long:"):
        out.write(b"\xc3\xa9" * int(line[5:]) + b"\n")
    elif line.startswith(b"err:"):
        sys.stderr.buffer.write(line[4:] + b"\n")
        sys.stderr.flush()
        out.write(b"logged\n")
    elif line == b"partial":
        out.write(b"no newline at the end")
        out.flush()
        sys.exit(0)
    else:
        out.write(b"echo:" + line + b"\n")
    out.flush()
""",
    "cat.sh": "#!/bin/sh\necho $$\nexec cat\n",
    "never_reads.sh": "#!/bin/sh\necho $$\nexec sleep 1000\n",
    "ignores_term.sh": "#!/bin/sh\ntrap '' TERM\necho $$\n"
                       "while :; do sleep 0.1; done\n",
    "status.sh": "#!/bin/sh\necho last words\nexit $1\n",
    "killed.sh": "#!/bin/sh\necho about to die\nkill -9 $$\n",
    # n numbered lines of 100 bytes as fast as the pipe takes them.
    "flood.py": r"""#!/usr/bin/python3
import os, sys
out = sys.stdout.buffer
out.write(b"pid %d\n" % os.getpid())
out.flush()
for i in range(int(sys.argv[1])):
    out.write(b"%08d %s\n" % (i, b"x" * 91))
out.flush()
""",
    "bad_interpreter.sh": "#!/nonexistent/interpreter\necho never\n",
    # Lines of bytes that are not UTF-8 (each becomes 3 bytes of U+FFFD).
    "garbage.py": r"""#!/usr/bin/python3
import sys
for i in range(int(sys.argv[1])):
    sys.stdout.buffer.write(b"\xff" * 5000 + b"\n")
""",
}


def install_programs(h):
    """The programs, in <ServerRoot>/bin (readable by httpd's user)."""
    bindir = os.path.join(h.root, "bin")
    os.makedirs(bindir, exist_ok=True)
    os.chmod(bindir, 0o755)
    for name, body in PROGRAMS.items():
        path = os.path.join(bindir, name)
        with open(path, "w") as f:
            f.write(body)
        os.chmod(path, 0o755)
    return bindir


def exec_loc(h, path, command, extra=""):
    return ("<Location %s>\n    SetHandler websocket-handler\n"
            '    WebSocketHandler "%s" exec_init\n'
            "    WebSocketParam command \"%s\"\n%s</Location>\n"
            % (path, harness.plugin_so("exec"), command, extra))


def prog(h, name):
    return os.path.join(h.root, "bin", name)


# ---- processes ----------------------------------------------------------------

def state(pid):
    """The process's state letter (R, S, T, Z, ...), or None when it is
    gone (reaped)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def parent(pid):
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def running(program):
    """pids of the processes running program (by their command line)."""
    out = []
    for d in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if program.encode() in argv[:2] and state(int(d)) not in (None, "Z"):
            out.append(int(d))
    return out


def zombies_of(h):
    """Zombie children of the httpd's children: programs nobody reaped."""
    kids = set(h.children())
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) in kids:
            out.append(int(d))
    return out


def wait_gone(pids, timeout=10, what="programs"):
    pids = list(pids)
    wait_for(lambda: all(state(p) is None for p in pids),
             "%s %s reaped (states %s)" % (what, pids,
                                             [state(p) for p in pids]),
             timeout)


def first_pid(c, timeout=10):
    """The pid a program announces in its first line ("123", "ready 123",
    "pid 123")."""
    return int(c.recv_text(timeout).split()[-1])


# ---- the shared server --------------------------------------------------------

def exec_conf(h):
    install_programs(h)
    grace = ("    WebSocketParam stop_grace 300ms\n"
             "    WebSocketParam kill_grace 700ms\n")
    return "".join([
        "SetEnv EXEC_SETENV from-setenv\n",
        "SetEnv EXEC_HIDDEN not-passed\n",
        exec_loc(h, "/env", "%s 'two words' plain" % prog(h, "env.py"),
                 "    WebSocketParam pass_env \"EXEC_SETENV EXEC_FROM_HTTPD "
                 "EXEC_UNSET\"\n"
                 "    WebSocketParam subprotocols \"chat.v2 chat.v1\"\n"),
        exec_loc(h, "/lines", prog(h, "lines.py"),
                 "    WebSocketParam max_line 100\n" + grace),
        exec_loc(h, "/cat", prog(h, "cat.sh"), grace),
        exec_loc(h, "/bincat", "cat", "    WebSocketParam mode binary\n"),
        exec_loc(h, "/status", prog(h, "status.sh") + " 0"),
        exec_loc(h, "/status3", prog(h, "status.sh") + " 3"),
        exec_loc(h, "/killed", prog(h, "killed.sh")),
        exec_loc(h, "/seq", "seq 1 20000"),
        exec_loc(h, "/never-reads", prog(h, "never_reads.sh"), grace),
        exec_loc(h, "/ignores-term", prog(h, "ignores_term.sh"), grace),
        exec_loc(h, "/never-reads-ka", prog(h, "never_reads.sh"), grace
                 + "    WebSocketPingInterval 1\n"
                 + "    WebSocketPingTimeout 1\n"),
        exec_loc(h, "/flood", prog(h, "flood.py") + " 50000",
                 "    WebSocketSendQueueLimit 256K\n"),
        exec_loc(h, "/bad-interpreter", prog(h, "bad_interpreter.sh")),
        exec_loc(h, "/garbage", prog(h, "garbage.py") + " 200",
                 "    WebSocketSendQueueLimit 8K\n"),
        exec_loc(h, "/missing", "/nonexistent/program"),
        exec_loc(h, "/bad-mode", "cat", "    WebSocketParam mode lines\n"),
        "<Location /no-command>\n    SetHandler websocket-handler\n"
        '    WebSocketHandler "%s" exec_init\n</Location>\n'
        % harness.plugin_so("exec"),
    ])


@pytest.fixture(scope="module")
def xsrv():
    from conftest import serve
    yield from serve(exec_conf, loglevel="warn websocket:info",
                     env={"EXEC_FROM_HTTPD": "from-httpd",
                          "EXEC_SECRET": "must-not-leak"})


@pytest.fixture(autouse=True)
def no_zombies(request):
    """After each test that used the shared server: no program of it left
    unreaped."""
    yield
    if "xsrv" in request.fixturenames:
        h = request.getfixturevalue("xsrv")
        wait_for(lambda: not zombies_of(h), "no zombie programs (%s)"
                 % zombies_of(h), timeout=10)


# ---- environment ----------------------------------------------------------------

def test_environment_is_cgi_like_and_filtered(xsrv):
    c = WSClient(xsrv.port, "/env/more/path?a=1&b=two",
                 headers=[("X-Custom-Thing", "custom value"),
                          ("Authorization", "Basic c2VjcmV0OnNlY3JldA==")],
                 protocols="chat.v9, chat.v1, chat.v2")
    assert c.response.header("Sec-WebSocket-Protocol") == "chat.v1"
    seen = json.loads(c.recv_text(10))
    c.expect_close(1000, timeout=10, reply=True)
    env = seen["env"]
    port = c.sock.getsockname()[1]
    expected = {
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": str(port),
        "QUERY_STRING": "a=1&b=two",
        "REQUEST_URI": "/env/more/path?a=1&b=two",
        "SCRIPT_NAME": "/env",
        "PATH_INFO": "/more/path",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": str(xsrv.port),
        "HTTP_X_CUSTOM_THING": "custom value",
        "HTTP_UPGRADE": "websocket",
        "WEBSOCKET_PROTOCOL": "chat.v1",
        "EXEC_SETENV": "from-setenv",
        "EXEC_FROM_HTTPD": "from-httpd",
    }
    for k, v in expected.items():
        assert env.get(k) == v, (k, env.get(k), env)
    assert env.get("PATH"), env
    allowed = set(expected) | {"PATH", "HTTP_HOST", "HTTP_CONNECTION",
                               "HTTP_SEC_WEBSOCKET_KEY",
                               "HTTP_SEC_WEBSOCKET_VERSION",
                               "HTTP_SEC_WEBSOCKET_PROTOCOL"}
    # Nothing else: not httpd's environment, not the other CGI variables,
    # not the Authorization header, not a SetEnv left out of pass_env.
    assert set(env) - allowed == set(), sorted(set(env) - allowed)
    assert "HTTPS" not in env and "REMOTE_USER" not in env
    # As httpd's user (root runs the tests: www-data), in its own session,
    # in its directory, with its arguments, and no descriptor but 0-2.
    if os.geteuid() == 0:
        import pwd
        assert seen["uid"] == pwd.getpwnam("www-data").pw_uid
    assert seen["sid"] == seen["pid"]
    assert seen["cwd"] == os.path.join(xsrv.root, "bin")
    assert seen["argv"][1:] == ["two words", "plain"]
    assert seen["fds"] == [0, 1, 2], seen["fds"]


def auth_tls_conf(h):
    install_programs(h)
    pw = os.path.join(h.root, "htpasswd")
    import subprocess
    subprocess.run(["htpasswd", "-bc", pw, "alice", "pw"], check=True,
                   capture_output=True)
    os.chmod(pw, 0o644)
    return exec_loc(h, "/env", prog(h, "env.py"),
                    "    AuthType Basic\n    AuthName exec\n"
                    "    AuthBasicProvider file\n"
                    "    AuthUserFile \"%s\"\n    Require valid-user\n" % pw)


def test_environment_over_tls_with_a_user(make_httpd):
    """HTTPS=on under mod_ssl, REMOTE_USER from Apache's auth; the
    Authorization header (the password) is not passed."""
    h = make_httpd(auth_tls_conf, tls=True)
    h.start()
    import base64
    auth = "Basic " + base64.b64encode(b"alice:pw").decode()
    c = WSClient(h.tls_port, "/env", tls=h.ssl_context(),
                 headers=[("Authorization", auth)])
    env = json.loads(c.recv_text(10))["env"]
    c.expect_close(1000, timeout=10, reply=True)
    assert env.get("HTTPS") == "on", env
    assert env.get("REMOTE_USER") == "alice", env
    assert "HTTP_AUTHORIZATION" not in env, env


# ---- text mode ------------------------------------------------------------------

def test_lines_both_ways(xsrv):
    c = WSClient(xsrv.port, "/lines")
    first_pid(c)
    for text in ("hello", "", "unicode h\u00e9llo \u2713", "x" * 90):
        c.send_text(text)
        assert c.recv_text(5) == "echo:" + text
    # A message with newlines is several lines for the program.
    c.send_text("one\ntwo\nthree")
    assert [c.recv_text(5) for _ in range(3)] == [
        "echo:one", "echo:two", "echo:three"]
    c.close_handshake(1000)


def test_messages_before_the_start_wait_for_it(xsrv):
    """Frames that come with the handshake reach the plugin before the
    poller has started the program: they wait, in order."""
    from wsraw import build_frame
    early = b"".join(build_frame(OP_TEXT, b"early %d" % i) for i in range(5))
    c = WSClient(xsrv.port, "/cat", early=early)
    first_pid(c)
    assert [c.recv_text(5) for _ in range(5)] == [
        "early %d" % i for i in range(5)]
    c.close_handshake(1000)


def test_output_not_utf8_is_repaired(xsrv):
    c = WSClient(xsrv.port, "/lines")
    first_pid(c)
    c.send_text("bad-utf8")
    # 0xff, a truncated sequence (c3 then '('), and a surrogate (ed a0 80)
    # become U+FFFD, one per byte that starts no character.
    assert c.recv_text(5) == "a\ufffdb\ufffd(c\ufffd\ufffd\ufffdd"
    c.close_handshake(1000)


def test_line_longer_than_max_line_is_cut_at_characters(xsrv):
    """max_line 100: 120 two-byte characters (240 bytes) make messages of
    at most 100 bytes, none splitting a character."""
    c = WSClient(xsrv.port, "/lines")
    first_pid(c)
    c.send_text("long:120")
    got = ""
    while len(got) < 120:
        part = c.recv_text(5)
        assert 0 < len(part.encode()) <= 100, part
        got += part
    assert got == "\u00e9" * 120
    c.send_text("after")
    assert c.recv_text(5) == "echo:after"
    c.close_handshake(1000)


def test_last_line_without_newline_is_sent(xsrv):
    c = WSClient(xsrv.port, "/lines")
    first_pid(c)
    c.send_text("partial")
    assert c.recv_text(5) == "no newline at the end"
    c.expect_close(1000, timeout=5, reply=True)


def test_binary_message_in_text_mode_is_refused(xsrv):
    c = WSClient(xsrv.port, "/lines")
    pid = first_pid(c)
    c.send_binary(b"\x00\x01")
    f = c.expect_close(1003, timeout=5, reply=True)
    assert f.close_reason == b"text messages only"
    wait_gone([pid])


def test_stderr_lines_go_to_the_error_log(xsrv):
    mark = xsrv.mark()
    c = WSClient(xsrv.port, "/lines")
    pid = first_pid(c)
    c.send_text("err:first problem")
    assert c.recv_text(5) == "logged"
    c.send_text("err:second problem")
    assert c.recv_text(5) == "logged"
    c.close_handshake(1000)
    log = xsrv.expect_log("second problem", mark)
    for what in ("first problem", "second problem"):
        assert ("[websocket:error]" in log and "exec /lines: %s[%d]: %s"
                % (prog(xsrv, "lines.py"), pid, what) in log), log


# ---- binary mode ------------------------------------------------------------------

def test_binary_mode_raw_both_ways(xsrv):
    c = WSClient(xsrv.port, "/bincat")
    data = bytes(range(256)) * 1024
    sent = b""
    for i in range(0, len(data), 50000):
        c.send_binary(data[i:i + 50000])
        sent += data[i:i + 50000]
    c.send_text("text goes raw too\n")
    sent += b"text goes raw too\n"
    got = b""
    while len(got) < len(sent):
        op, payload = c.recv_message(5)
        assert op == OP_BINARY and len(payload) <= 65536
        got += payload
    assert got == sent
    c.close_handshake(1000)


# ---- the program's end -------------------------------------------------------------

@pytest.mark.parametrize("path,code,reason", [
    ("/status", 1000, b""),
    ("/status3", 1011, b"program exited with status 3"),
])
def test_exit_status_gives_the_close_code(xsrv, path, code, reason):
    c = WSClient(xsrv.port, path)
    assert c.recv_text(5) == "last words"
    f = c.expect_close(code, timeout=5, reply=True)
    assert f.close_reason == reason


def test_killed_by_a_signal_is_1011(xsrv):
    c = WSClient(xsrv.port, "/killed")
    assert c.recv_text(5) == "about to die"
    f = c.expect_close(1011, timeout=5, reply=True)
    assert f.close_reason == b"program killed by signal 9"


def test_all_output_comes_before_the_close(xsrv):
    """seq (found in PATH) writes 20,000 lines and exits at once: every
    line arrives, in order, then the Close."""
    c = WSClient(xsrv.port, "/seq")
    for i in range(1, 20001):
        assert c.recv_text(10) == str(i)
    c.expect_close(1000, timeout=5, reply=True)


def test_program_that_cannot_start_is_1011(xsrv):
    mark = xsrv.mark()
    c = WSClient(xsrv.port, "/bad-interpreter")
    f = c.expect_close(1011, timeout=5, reply=True)
    assert f.close_reason == b"cannot start the program"
    xsrv.expect_log("bad_interpreter.sh: cannot start it", mark)


@pytest.mark.parametrize("path,problem", [
    ("/missing", "command: '/nonexistent/program' is not an executable "
                 "file"),
    ("/bad-mode", "mode 'lines' is neither text nor binary"),
    ("/no-command", "no WebSocketParam command"),
])
def test_bad_parameters_are_500(xsrv, path, problem):
    mark = xsrv.mark()
    r = handshake(xsrv.port, path)
    assert r.status == 500
    xsrv.expect_log("exec %s: %s" % (path, problem), mark)


# ---- the connection's end -------------------------------------------------------------

def test_client_close_ends_the_program_through_stdin(xsrv):
    """cat ends when its stdin closes: no signal needed."""
    mark = xsrv.mark()
    c = WSClient(xsrv.port, "/cat")
    pid = first_pid(c)
    c.send_text("ping")
    assert c.recv_text(5) == "ping"
    c.close_handshake(1000)
    wait_gone([pid], 5)
    assert "SIGTERM" not in xsrv.since(mark)


def test_vanished_client_then_sigterm(xsrv):
    """A program that ignores its stdin gets SIGTERM stop_grace (300 ms)
    after the client went away without a Close."""
    mark = xsrv.mark()
    c = WSClient(xsrv.port, "/never-reads")
    pid = first_pid(c)
    t0 = time.monotonic()
    c.abort()
    wait_gone([pid], 5)
    took = time.monotonic() - t0
    assert took >= 0.25, took
    xsrv.expect_log("never_reads.sh[%d]: still running 300 ms after its "
                    "stdin was closed: SIGTERM" % pid, mark)


def test_program_ignoring_sigterm_gets_sigkill(xsrv):
    mark = xsrv.mark()
    c = WSClient(xsrv.port, "/ignores-term")
    pid = first_pid(c)
    t0 = time.monotonic()
    c.close_handshake(1000)
    xsrv.expect_log("ignores_term.sh[%d]: still running 300 ms after its "
                    "stdin was closed: SIGTERM" % pid, mark)
    # It ignores it: still there until kill_grace (700 ms) has passed.
    assert state(pid) not in (None, "Z")
    xsrv.expect_log("ignores_term.sh[%d]: still running 700 ms after "
                    "SIGTERM: SIGKILL" % pid, mark)
    wait_gone([pid], 5)
    assert time.monotonic() - t0 >= 0.9


def test_stopped_program_is_still_ended(xsrv):
    """A program stopped (SIGSTOP) when its client leaves gets SIGTERM and
    SIGCONT, and is reaped."""
    c = WSClient(xsrv.port, "/never-reads")
    pid = first_pid(c)
    os.kill(pid, signal.SIGSTOP)
    wait_for(lambda: state(pid) == "T", "program stopped")
    c.close_handshake(1000)
    wait_gone([pid], 5)


# ---- back-pressure --------------------------------------------------------------------

def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_program_that_never_reads_stops_the_client(xsrv):
    """The client sends 32 MiB to a program that never reads: the pipe
    fills, the module stops reading the socket, TCP stops the client.
    What the client gets through is the socket buffers and the pipe, not
    the 32 MiB; the child's memory does not grow by it.  A client that is
    not read cannot be heard leaving: the keepalive (WebSocketPingInterval
    1, WebSocketPingTimeout 1) drops it, and the program is ended."""
    (child,) = xsrv.children()
    rss0 = rss_kib(child)
    mark = xsrv.mark()
    c = WSClient(xsrv.port, "/never-reads-ka")
    pid = first_pid(c)
    c.sock.setblocking(False)
    frame = __import__("wsraw").build_frame(OP_TEXT, b"y" * 65536)
    sent, stalled_since, total = 0, None, 32 * 1024 * 1024
    pending = b""
    while sent < total:
        if not pending:
            pending = frame
        try:
            n = c.sock.send(pending)
            pending = pending[n:]
            sent += n
            stalled_since = None
        except BlockingIOError:
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since > 1.5:
                break
            time.sleep(0.01)
    assert sent < 12 * 1024 * 1024, "the client sent %d bytes" % sent
    assert rss_kib(child) - rss0 < 8 * 1024, (rss0, rss_kib(child))
    c.sock.setblocking(True)
    c.abort()
    wait_gone([pid], 10)
    xsrv.expect_log("no Pong within 1000 ms", mark)


def test_flooding_program_waits_for_a_slow_client(xsrv):
    """flood.py writes 50,000 lines (5 MB) at once; the client does not
    read until the server's socket is full and the program is blocked in
    write(2).  With WebSocketSendQueueLimit 256K a plugin that kept
    reading would be cut off with 1008; this one stops reading and every
    line arrives, in order, then 1000."""
    c = WSClient(xsrv.port, "/flood", rcvbuf=32768)
    pid = first_pid(c)
    wait_for(lambda: server_send_queue(c) > 32768, "the server's socket "
             "backed up", timeout=10)
    wait_for(lambda: state(pid) == "S" and "pipe" in
             open("/proc/%d/wchan" % pid).read(), "the program blocked "
             "writing to its stdout pipe", timeout=10)
    for i in range(50000):
        line = c.recv_text(20)
        assert line.startswith("%08d " % i), (i, line[:20])
    c.expect_close(1000, timeout=10, reply=True)


def test_repaired_output_fits_the_queue_limit(xsrv):
    """Text messages are at most an eighth of WebSocketSendQueueLimit (8K:
    1K) before repair, so that U+FFFD for every byte (3K) still fits above
    the point where reading stops (4K): a slow client gets everything,
    and no 1008."""
    c = WSClient(xsrv.port, "/garbage", rcvbuf=4096)
    wait_for(lambda: server_send_queue(c) > 4096, "the server's socket "
             "backed up", timeout=10)
    total = 0
    while total < 200 * 5000:
        text = c.recv_text(10)
        assert 0 < len(text) <= 1024 and set(text) == {"\ufffd"}, len(text)
        total += len(text)
    assert total == 200 * 5000
    c.expect_close(1000, timeout=10, reply=True)


def no_pidfd_conf(h):
    install_programs(h)
    grace = ("    WebSocketParam stop_grace 300ms\n"
             "    WebSocketParam kill_grace 700ms\n")
    return (exec_loc(h, "/status3", prog(h, "status.sh") + " 3")
            + exec_loc(h, "/ignores-term", prog(h, "ignores_term.sh"), grace))


def test_without_pidfds(make_httpd):
    """Where pidfd_open fails (kernels before 5.3; WS_EXEC_NO_PIDFD=1
    here), programs are reaped by polling waitid on their pid: an exit is
    still told with its status, and the grace periods still run."""
    h = make_httpd(no_pidfd_conf, env={"WS_EXEC_NO_PIDFD": "1"})
    h.start()
    c = WSClient(h.port, "/status3")
    assert c.recv_text(5) == "last words"
    c.expect_close(1011, timeout=5, reply=True)
    c = WSClient(h.port, "/ignores-term")
    pid = first_pid(c)
    (child,) = h.children()
    assert not [fd for fd in os.listdir("/proc/%d/fd" % child)
                if "pidfd" in os.readlink("/proc/%d/fd/%s" % (child, fd))]
    c.close_handshake(1000)
    wait_gone([pid], 5)
    assert "SIGKILL" in h.error_log()
    assert not zombies_of(h)


def sync_conf(h):
    install_programs(h)
    return (exec_loc(h, "/lines", prog(h, "lines.py"))
            + exec_loc(h, "/flood", prog(h, "flood.py") + " 50000",
                       "    WebSocketSendQueueLimit 256K\n"))


@pytest.mark.parametrize("mpm", ["worker", "prefork"])
def test_sync_engine(make_httpd, mpm):
    """The same plugin where the handler's thread runs the connection:
    lines both ways, and a flood to a slow client without 1008."""
    h = make_httpd(sync_conf, mpm=mpm,
                   mpm_conf=PREFORK_MPM if mpm == "prefork" else None,
                   loglevel="warn websocket:debug")
    h.start()
    c = WSClient(h.port, "/lines")
    first_pid(c)
    c.send_text("over the sync engine")
    assert c.recv_text(5) == "echo:over the sync engine"
    c.close_handshake(1000)
    c = WSClient(h.port, "/flood", rcvbuf=32768)
    pid = first_pid(c)
    wait_for(lambda: server_send_queue(c) > 32768, "the server's socket "
             "backed up", timeout=10)
    wait_for(lambda: state(pid) == "S" and "pipe" in
             open("/proc/%d/wchan" % pid).read(), "the program blocked "
             "writing to its stdout pipe", timeout=10)
    for i in range(50000):
        assert c.recv_text(20).startswith("%08d " % i), i
    c.expect_close(1000, timeout=10, reply=True)
    assert "WebSocket engine: sync" in h.error_log()
    wait_gone([pid])


# ---- many programs -------------------------------------------------------------------

SCALE_MPM = harness.ONE_CHILD


def scale_conf(h):
    install_programs(h)
    return exec_loc(h, "/cat", prog(h, "cat.sh"),
                    "    WebSocketParam max_processes 250\n")


@pytest.mark.slow
def test_200_connections_200_programs(make_httpd):
    h = make_httpd(scale_conf, mpm_conf=SCALE_MPM)
    h.start()
    clients = open_many(h.port, "/cat", n=200, batch=50)
    try:
        pids = [first_pid(c, 30) for c in clients]
        assert len(set(pids)) == 200
        (child,) = h.children()
        assert all(parent(p) == child for p in pids)
        for i, c in enumerate(clients):
            c.send_text("message %d" % i)
        for i, c in enumerate(clients):
            assert c.recv_text(20) == "message %d" % i
        # One poller thread in the child, not one per connection.
        threads = len(os.listdir("/proc/%d/task" % child))
        assert threads < 60, threads
        # The programs are started by the poller: 200 spawns did not hold
        # the event loop up (the watchdog would have said so).
        assert "WebSocketSlowPlugin" not in h.error_log()
        for c in clients:
            c.send_close(1000)
        for c in clients:
            c.expect_close(1000, timeout=20)
    finally:
        for c in clients:
            c.close()
    wait_gone(pids, 20)
    assert not zombies_of(h)


# ---- the process limit -------------------------------------------------------------------

def limit_conf(h):
    install_programs(h)
    return exec_loc(h, "/limited", prog(h, "cat.sh"),
                    "    WebSocketParam max_processes 2\n") + \
        exec_loc(h, "/other", prog(h, "cat.sh"),
                 "    WebSocketParam max_processes 1\n")


PREFORK_MPM = """
StartServers 4
MinSpareServers 4
MaxSpareServers 8
ServerLimit 8
MaxRequestWorkers 8
MaxConnectionsPerChild 0
"""


@pytest.mark.parametrize("mpm", ["event", "prefork"])
def test_process_limit_is_per_location_over_the_server(make_httpd, mpm):
    """max_processes 2: the third handshake gets 503 with Retry-After,
    whichever child it reaches (on prefork each connection has a child of
    its own); another location has its own count; a place comes back when
    a program is reaped."""
    h = make_httpd(limit_conf, mpm=mpm,
                   mpm_conf=PREFORK_MPM if mpm == "prefork" else None)
    h.start()
    a = WSClient(h.port, "/limited")
    b = WSClient(h.port, "/limited")
    pids = [first_pid(a), first_pid(b)]
    if mpm == "prefork":
        assert parent(pids[0]) != parent(pids[1])
    mark = h.mark()
    r = handshake(h.port, "/limited")
    assert r.status == 503 and r.header("Retry-After") == "5", r
    h.expect_log("exec /limited: 2 programs run already (max_processes): "
                 "refused with 503", mark)
    o = WSClient(h.port, "/other")
    first_pid(o)
    assert handshake(h.port, "/other").status == 503
    a.close_handshake(1000)
    wait_gone(pids[:1])
    c = WSClient(h.port, "/limited")
    first_pid(c)
    for x in (b, c, o):
        x.close_handshake(1000)


def test_places_of_a_crashed_child_come_back():
    """prefork, max_processes 1: the child running the program is killed
    (SIGKILL); its place is reclaimed for the next handshake."""
    from conftest import require_build
    require_build()
    h = harness.Httpd(mpm="prefork", mpm_conf=PREFORK_MPM)
    h.write_conf(limit_conf(h))
    orphan = None
    try:
        h.start()
        a = WSClient(h.port, "/other")
        orphan = first_pid(a)
        os.kill(parent(orphan), signal.SIGKILL)
        a.close()
        c = wait_until(lambda: handshake(h.port, "/other").status == 101
                       or None, timeout=10)
        assert c, "the dead child's place was never reclaimed"
    finally:
        if orphan and state(orphan):
            os.kill(orphan, signal.SIGKILL)
        h.stop(check=False)
        problems = [l for l in h.error_log().splitlines()
                    if harness.CRASH_RE.search(l)
                    and "exit signal Killed" not in l]
        rep = h.check_sanitizers(raise_=False)
        h.cleanup()
    assert not problems and not rep, (problems, rep)


# ---- restarts and stops ---------------------------------------------------------------------

def restart_conf(h):
    install_programs(h)
    grace = ("    WebSocketParam stop_grace 300ms\n"
             "    WebSocketParam kill_grace 700ms\n")
    return ("WebSocketCloseTimeout 1\n"
            + exec_loc(h, "/cat", prog(h, "cat.sh"), grace)
            + exec_loc(h, "/ignores-term", prog(h, "ignores_term.sh"), grace))


def open_programs(h):
    clients = [WSClient(h.port, "/cat") for _ in range(3)]
    clients.append(WSClient(h.port, "/ignores-term"))
    return clients, [first_pid(c) for c in clients]


@pytest.mark.parametrize("mpm", ["event", "prefork"])
def test_graceful_restart_ends_the_programs(make_httpd, mpm):
    h = make_httpd(restart_conf, mpm=mpm,
                   mpm_conf=PREFORK_MPM if mpm == "prefork" else None)
    h.start()
    clients, pids = open_programs(h)
    before = h.generations()
    mark = h.mark()
    os.kill(h.pid, signal.SIGUSR1)
    for c in clients:
        c.expect_close(1012, timeout=10, reply=True)
    wait_gone(pids, 10)
    # cat ended with its stdin; the other needed SIGKILL.
    log = h.since(mark)
    assert "ignores_term.sh[%d]: still running 700 ms after SIGTERM: " \
           "SIGKILL" % pids[3] in log, log
    assert "cat.sh[%d]: still running" % pids[0] not in log, log
    h.wait_new_generation(before)
    c = WSClient(h.port, "/cat")
    first_pid(c)
    c.close_handshake(1000)


@pytest.mark.parametrize("mpm,how", [("event", "stop"),
                                     ("event", "graceful-stop"),
                                     ("prefork", "stop")])
def test_stop_ends_the_programs(make_httpd, mpm, how):
    """A stop (SIGTERM to httpd) or a graceful stop (SIGWINCH): the
    programs are ended as above (cat by its stdin, the other by SIGKILL)
    before the children exit, and httpd exits without having to signal
    its children again."""
    h = make_httpd(restart_conf, mpm=mpm,
                   mpm_conf=PREFORK_MPM if mpm == "prefork" else None)
    h.start()
    clients, pids = open_programs(h)
    if how == "stop":
        h.stop()
    else:
        h.graceful_stop()
    for pid in pids:
        assert state(pid) is None, (pid, state(pid))
    log = h.error_log()
    assert "AH00045" not in log
    assert "ignores_term.sh[%d]: still running 700 ms after SIGTERM: " \
           "SIGKILL" % pids[3] in log, log
    for c in clients:
        c.close()


def test_demo_system_monitor(make_httpd):
    """make run's /monitor: demo/sysmon.sh through the exec plugin."""
    h = make_httpd(harness.demo_conf)
    h.start()
    c = WSClient(h.port, "/monitor")
    s = json.loads(c.recv_text(5))
    assert len(s["load"]) == 3 and s["mem_total_kib"] > 0, s
    assert (s["interval_s"], s["client"]) == (1, "127.0.0.1"), s
    (pid,) = running(os.path.join(h.root, "sysmon.sh"))
    assert parent(pid) in h.children()
    c.send_text("interval 0.2")
    assert json.loads(c.recv_text(5))["interval_s"] == 0.2
    t0 = time.monotonic()
    for _ in range(3):
        json.loads(c.recv_text(5))
    assert time.monotonic() - t0 < 0.9
    c.close_handshake(1000)
    wait_gone([pid], 3)
