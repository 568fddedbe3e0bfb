"""A private redis-server for the tests and benchmarks of WebSocketRedis
(t/test_redis.py, bench/redis_scenario.py): Debian's redis-server on a
free loopback port with no persistence (never the system service), a
tiny RESP client, and a server that accepts and never answers.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import harness

REDIS_SERVER = "/usr/bin/redis-server"


class Redis:
    """A redis-server of our own on 127.0.0.1 (no persistence)."""

    def __init__(self, password=None):
        self.port = harness.free_port()
        self.password = password
        self.dir = tempfile.mkdtemp(prefix="ws-redis-")
        self.proc = None

    def url(self, password=None):
        pw = password if password is not None else self.password
        return "redis://%s127.0.0.1:%d" % (":%s@" % pw if pw else "",
                                            self.port)

    def start(self, wait=10.0):
        args = [REDIS_SERVER, "--port", str(self.port), "--bind",
                "127.0.0.1", "--save", "", "--appendonly", "no", "--dir",
                self.dir, "--daemonize", "no", "--logfile",
                os.path.join(self.dir, "redis.log")]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        end = time.monotonic() + wait
        while time.monotonic() < end:
            try:
                if self.cmd("PING") in ("PONG", b"PONG"):
                    return self
            except (OSError, RedisError):
                pass
            if self.proc.poll() is not None:
                raise RedisError("redis-server exited at start")
            time.sleep(0.05)
        raise RedisError("redis-server did not answer on %d" % self.port)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def pause(self):
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        os.kill(self.proc.pid, signal.SIGCONT)

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def cmd(self, *args):
        """One command; the decoded reply (errors raise RedisError)."""
        with socket.create_connection(("127.0.0.1", self.port),
                                      timeout=5) as s:
            f = s.makefile("rb")
            if self.password:
                s.sendall(encode("AUTH", self.password))
                read_reply(f)
            s.sendall(encode(*args))
            return read_reply(f)

    def numsub(self, channel):
        return int(self.cmd("PUBSUB", "NUMSUB", channel)[1])

    def wait_numsub(self, channel, n, timeout=10.0):
        end = time.monotonic() + timeout
        while True:
            got = self.numsub(channel)
            if got == n:
                return
            if time.monotonic() > end:
                raise AssertionError("%s has %d subscribers, not %d, after "
                                     "%ss" % (channel, got, n, timeout))
            time.sleep(0.02)


class RedisError(Exception):
    pass


def encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def read_reply(f):
    line = f.readline()
    if not line:
        raise RedisError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RedisError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2]
    if kind == b"*":
        return [read_reply(f) for _ in range(int(rest))]
    raise RedisError("bad reply %r" % line)


class SilentServer:
    """Accepts connections and never answers (a hung Redis, or not one)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.accepted = 0
        self.stopping = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        self.sock.settimeout(0.2)
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(c)     # read nothing, answer nothing
            self.accepted += 1

    def close(self):
        self.stopping = True
        self.thread.join(5)
        for c in self.conns:
            c.close()
        self.sock.close()


