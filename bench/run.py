#!/usr/bin/python3
"""mod_websocket benchmarks: the `make bench` driver (docs/performance.md).

    /usr/bin/python3 bench/run.py [--only a,b,c,c100k,d,e,f,g,h,i,k,r,s] [--runs 3]
                                  [--secs 5] [--subs 10000] [--write-docs]
                                  [--baseline DIR] [--keep]

Needs the module and bench tools built (`make bench` does that).  Starts
bench/tcpecho (the raw TCP reference) and private httpds (event MPM,
generated configs in a temp dir under /tmp, free loopback ports), runs each
scenario --runs times with the reference interleaved, and prints one line
per figure: value, reference, ratio, target, PASS/MISS/INFO.

  a      32 B text echo, 64 connections, depth 1: msgs/s vs raw TCP, and
         server CPU us/msg; WebSocketEventThreads 1 and 2
  b      64 KiB binary echo, 16 connections: MB/s vs raw TCP
  c      10,000 idle sockets, one child of 25 threads: RSS per socket and
         threads per child before/after
  c100k  100,000 idle sockets, 8 children: all open, RSS per socket,
         one echo on every socket after the hold
  d      codec micro-benchmark (bench/bench_codec): masking, UTF-8
  f      fairness: 32 B echo latency of an innocent client while 2 others
         stream 8 MiB compressible messages with permessage-deflate on
         the same event loop; the innocent client alone is the reference
  e      permessage-deflate: 1 KiB JSON echo, compression on vs off:
         server CPU us/msg and wire bytes per message; zlib memory per
         connection (bench/deflate_memory)
  r      WebSocketRedis: cross-node delivery latency p50/p99 and
         publishes/s through a redis-server of our own, against
         local-only delivery (bench/redis_scenario.py)
  g      topics' fan-out: 10,000 subscribers of one topic (the pubsub
         plugin) over 2 children, one 32-byte message every ms (and every
         20 ms) published by a chat member (the plugin API): server CPU
         per delivered message and publish-to-last-delivery latency
         p50/p99; reference: bench/fanout (raw TCP, 2 threads) writing the
         same bytes to as many sockets
  h      publishes per second with one subscriber: POSTs to /pub (4
         keep-alive connections; reference: GETs of a 32-byte file) and
         text messages to a chat member (the plugin API's publish;
         reference: the echo plugin, same client)
  s      mod_status's WebSocket counters: 32 B echo, 64 connections,
         server CPU us/msg with mod_status loaded (the counters on) and
         without (off), two httpds loaded in turn in the same run
         (bench/status_scenario.py)
  i, k   timers and idle CPU at 100,000 sockets, with and without pings;
         handshake storms against static GETs, and 10,000 clients across
         a graceful restart (bench/scale_scenarios.py)

Writes nothing outside /tmp, except docs/performance.md's results block
with --write-docs.  Every process it starts has a bounded lifetime and is
stopped before it exits.
"""

import argparse
import datetime
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
sys.path.insert(0, os.path.join(REPO, "t"))

import harness  # noqa: E402
import topics  # noqa: E402
from wsraw import wait_for  # noqa: E402

APACHE = harness.APACHE
MODULE = harness.module_so()
ECHO = harness.plugin_so("echo")
WSLOAD = os.path.join(BENCH, "wsload")
TCPECHO = os.path.join(BENCH, "tcpecho")
CODEC = os.path.join(BENCH, "bench_codec")
DEFMEM = os.path.join(BENCH, "deflate_memory")
FANOUT = os.path.join(BENCH, "fanout")
FANLOAD = os.path.join(BENCH, "fanload")
DOC = os.path.join(REPO, "docs", "performance.md")
DOC_BEGIN = "<!-- bench/run.py results: begin -->"
DOC_END = "<!-- bench/run.py results: end -->"

SCENARIOS = ("a", "b", "c", "c100k", "d", "e", "f", "g", "h", "i", "k", "r", "s")

# Every figure of the run, for the summary and --write-docs.
FIGURES = []
# What went wrong outside a scenario's own checks (an httpd that crashed).
PROBLEMS = []


class BenchError(Exception):
    pass


def log(msg):
    print("# " + msg, file=sys.stderr, flush=True)


def wait_listening(port, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise BenchError("nothing listens on port %d" % port)


def vm_rss_kib(pid):
    """VmRSS of a process, from /proc/PID/status (0 if gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k == "VmRSS":
                    return int(v.split()[0])
    except OSError:
        pass
    return 0


def thread_ids(pid):
    """The ids of a process's threads.  Compared as sets, not counted: the
    MPM starts a child's threads from a thread that then exits, so a count
    taken early may include it, while a thread added later has a new id."""
    try:
        return set(os.listdir("/proc/%d/task" % pid))
    except OSError:
        return set()


def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return -1


def meminfo_kib(key):
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


# ---- processes ---------------------------------------------------------------

class Httpd(harness.Httpd):
    """t/harness.py's private httpd (event MPM), set up for the benchmarks:
    mod_websocket and the echo plugin at /echo (compression as configured)
    and /echo-nc (compression off), server_limit children of
    threads_per_child threads, no access log, no DocumentRoot, LogLevel
    warn."""

    def __init__(self, workdir, name, threads_per_child=25, server_limit=1,
                 event_threads=None, extra="", location_extra="",
                 docroot=False, build_dir=None, start_servers=None):
        # build_dir: the module and echo plugin of another build tree (an
        # older commit built with `make build`), for --baseline.
        self.build_dir = build_dir
        self.threads_per_child = threads_per_child
        workers = threads_per_child * server_limit
        mpm_conf = """\
StartServers {start}
ServerLimit {limit}
ThreadLimit {tpc}
ThreadsPerChild {tpc}
MaxRequestWorkers {workers}
MinSpareThreads 1
MaxSpareThreads {workers}
MaxConnectionsPerChild 0
AsyncRequestWorkerFactor 1000
""".format(limit=server_limit, tpc=threads_per_child, workers=workers,
           start=start_servers or server_limit)
        super().__init__(mpm_conf=mpm_conf, loglevel="warn", timeout=30,
                         tmp_parent=workdir, access_log=False, docroot=docroot)
        self.name = name
        if build_dir:
            self.module_path = os.path.join(build_dir, ".libs",
                                            "mod_websocket.so")
        et = ("WebSocketEventThreads %d\n" % event_threads
              if event_threads is not None else "")
        self.write_conf("""\
ListenBacklog 4096
{et}{extra}
<Location /echo>
    SetHandler websocket-handler
    WebSocketHandler "{echo}" echo_init
    WebSocketOriginCheck Off
{location_extra}
</Location>
<Location /echo-nc>
    SetHandler websocket-handler
    WebSocketHandler "{echo}" echo_init
    WebSocketOriginCheck Off
    WebSocketCompression Off
</Location>
""".format(et=et, extra=extra, echo=self.echo_so,
           location_extra=location_extra))

    @property
    def echo_so(self):
        if self.build_dir:
            return os.path.join(self.build_dir, "plugins", ".libs",
                                "mod_websocket_echo.so")
        return harness.plugin_so("echo")

    def ws_url(self, path="/echo"):
        return self.url(path, "ws")

    def start(self, expect_children=1, timeout=30.0):
        """Started once every child runs (harness.Httpd.start waits for
        the first answer)."""
        try:
            super().start(wait=timeout)
            wait_for(lambda: len(self.children()) >= expect_children,
                     "%d children of httpd %s" % (expect_children, self.name),
                     timeout=timeout)
        except AssertionError as e:       # HttpdError is one
            self.stop()
            raise BenchError("httpd %s did not start: %s" % (self.name, e))
        return self

    def stop(self):
        """Never raises (it runs in finally blocks, before other stops): a
        crash or a sanitizer report is logged and counted as a failure."""
        try:
            super().stop()
        except harness.HttpdError as e:
            PROBLEMS.append("httpd %s: %s" % (self.name, e))
            log(PROBLEMS[-1])


class TcpEcho:
    def __init__(self, threads=1, duration=600):
        self.port = harness.free_port()
        self.proc = subprocess.Popen(
            [TCPECHO, "-p", str(self.port), "-T", str(threads),
             "--duration", str(int(duration))],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        wait_listening(self.port)

    @property
    def pid(self):
        return self.proc.pid

    def url(self):
        return "tcp://127.0.0.1:%d" % self.port

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def parse_summary(line):
    out = {}
    for tok in line.split():
        k, _, v = tok.partition("=")
        try:
            out[k] = float(v)
        except ValueError:
            out[k] = v
    return out


def wsload(args, timeout, check=True):
    """Runs wsload; returns its summary as a dict (numbers as floats)."""
    cmd = [WSLOAD] + [str(a) for a in args]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise BenchError("wsload did not finish in %ss: %s"
                         % (timeout, " ".join(cmd)))
    lines = p.stdout.strip().splitlines()
    if not lines:
        raise BenchError("wsload printed nothing (%d): %s\n%s"
                         % (p.returncode, " ".join(cmd), p.stderr[-2000:]))
    r = parse_summary(lines[-1])
    r["_stderr"] = p.stderr
    r["_cmd"] = " ".join(os.path.relpath(a, REPO) if a.startswith(REPO)
                         else a for a in cmd)
    if check and p.returncode != 0:
        log("wsload exit %d: %s\n%s" % (p.returncode, r["_cmd"],
                                          p.stderr[-1500:]))
    return r


def echo_args(secs, conns, size, typ="text", extra=()):
    return ["-c", conns, "-s", size, "-t", typ, "-d", 1, "--duration", secs,
            "--warmup", 1, "--timeout", 10] + list(extra)


def median(rs, key):
    return statistics.median(r[key] for r in rs)


def spread(rs, key, fmt="%.3g"):
    return "[" + " ".join(fmt % r[key] for r in rs) + "]"


# ---- figures -------------------------------------------------------------------

def figure(fid, what, value, ref=None, ratio=None, target=None, ok=None,
           runs=None, command=None):
    """One line: id, what, value, reference, ratio, target, verdict."""
    verdict = "INFO" if ok is None else ("PASS" if ok else "MISS")
    parts = ["%-8s %s: %s" % (fid, what, value)]
    if ref is not None:
        parts.append("ref %s" % ref)
    if ratio is not None:
        parts.append("ratio %.2fx" % ratio)
    if target is not None:
        parts.append("target %s" % target)
    parts.append(verdict)
    line = " | ".join(parts)
    if runs:
        line += "   " + runs
    print(line, flush=True)
    FIGURES.append(dict(id=fid, what=what, value=value, ref=ref or "",
                        ratio="%.2fx" % ratio if ratio is not None else "",
                        target=target or "", verdict=verdict,
                        command=command or ""))


def k(n):
    return "%.1fk" % (n / 1e3)


# ---- scenarios -----------------------------------------------------------------

def scenario_ab(args, work, which):
    secs, runs = args.secs, args.runs
    per_run = secs + 1 + 15
    echo = TcpEcho(threads=1, duration=runs * per_run * 4 + 60)
    servers = {}
    try:
        ets = (1, 2) if "a" in which else (2,)
        for et in ets:
            servers[et] = Httpd(work, "et%d" % et, event_threads=et).start()
        if "a" in which:
            raw, ws = [], {et: [] for et in ets}
            for i in range(runs):
                log("a: run %d/%d" % (i + 1, runs))
                raw.append(wsload(["--raw"] + echo_args(secs, 64, 32) +
                                  ["--cpu-pid", echo.pid, echo.url()],
                                  per_run + 30))
                for et in ets:
                    h = servers[et]
                    ws[et].append(wsload(echo_args(secs, 64, 32) +
                                         ["--cpu-pid", h.pid, "--cpu-children",
                                          h.ws_url()], per_run + 30))
            raw_m = median(raw, "msgs_per_s")
            raw_us = median(raw, "server_us_per_msg")
            for et in ets:
                m = median(ws[et], "msgs_per_s")
                us = median(ws[et], "server_us_per_msg")
                p50 = median(ws[et], "p50_us")
                figure("a.rate.et%d" % et,
                       "32 B echo, 64 conns, WebSocketEventThreads %d, msgs/s"
                       % et, k(m), "raw TCP %s" % k(raw_m), m / raw_m,
                       ">= 0.90x", m / raw_m >= 0.90,
                       "ws %s raw %s" % (spread(ws[et], "msgs_per_s"),
                                         spread(raw, "msgs_per_s")),
                       "--only a")
                figure("a.cpu.et%d" % et,
                       "32 B echo, WebSocketEventThreads %d, server CPU us/msg"
                       % et, "%.2f us" % us, "tcpecho %.2f us" % raw_us,
                       us / raw_us, "<= 5.5 us", us <= 5.5,
                       "ws %s" % spread(ws[et], "server_us_per_msg"),
                       "--only a")
                figure("a.p50.et%d" % et,
                       "32 B echo, WebSocketEventThreads %d, p50 RTT" % et,
                       "%.0f us" % p50,
                       "raw TCP %.0f us" % median(raw, "p50_us"),
                       p50 / median(raw, "p50_us"), command="--only a")
        if "b" in which:
            h = servers[2]
            raw, ws = [], []
            for i in range(runs):
                log("b: run %d/%d" % (i + 1, runs))
                raw.append(wsload(["--raw"] + echo_args(secs, 16, "64k",
                                                        "binary") +
                                  ["--cpu-pid", echo.pid, echo.url()],
                                  per_run + 30))
                ws.append(wsload(echo_args(secs, 16, "64k", "binary") +
                                 ["--cpu-pid", h.pid, "--cpu-children",
                                  h.ws_url()], per_run + 30))
            m, raw_m = median(ws, "MB_per_s"), median(raw, "MB_per_s")
            figure("b.rate", "64 KiB binary echo, 16 conns, MB/s (one way)",
                   "%.0f MB/s" % m, "raw TCP %.0f MB/s" % raw_m, m / raw_m,
                   ">= 0.85x", m / raw_m >= 0.85,
                   "ws %s raw %s" % (spread(ws, "MB_per_s"),
                                     spread(raw, "MB_per_s")), "--only b")
            us, raw_us = (median(ws, "server_us_per_msg"),
                          median(raw, "server_us_per_msg"))
            figure("b.cpu", "64 KiB binary echo, server CPU us/msg",
                   "%.1f us" % us, "tcpecho %.1f us" % raw_us, us / raw_us,
                   command="--only b")
    finally:
        for h in servers.values():
            h.stop()
        echo.stop()


def scenario_c(args, work):
    import idle_scenarios
    idle_scenarios.scenario_c(args, work, sys.modules[__name__])


def scenario_c100k(args, work):
    import idle_scenarios
    idle_scenarios.scenario_c100k(args, work, sys.modules[__name__])


def scenario_d(args, work):
    p = subprocess.run([CODEC, "0.5"], capture_output=True, text=True,
                       timeout=120)
    if p.returncode != 0:
        raise BenchError("bench_codec failed: " + p.stderr)
    memcpy = None
    for line in p.stdout.splitlines():
        f = line.split()
        if not f or f[0].startswith("#") or len(f) < 4:
            continue
        if f[0].startswith("memcpy"):
            memcpy = "%s %s" % (f[1], f[2])
        if f[0].startswith(("mask", "unmask", "utf8", "parse")):
            figure("d." + f[0], "codec " + f[0], "%s %s" % (f[1], f[2]),
                   "memcpy %s" % memcpy, float(f[3]), command="--only d")


def baseline_figure(on, bl, build_dir):
    """e.cpu.baseline: this build's compressed echo against another
    build's (--baseline), runs interleaved; the spread is per run pair."""
    us_on, us_bl = (median(on, "server_us_per_msg"),
                    median(bl, "server_us_per_msg"))
    pairs = ["%.2f" % (a["server_us_per_msg"] / b["server_us_per_msg"])
             for a, b in zip(on, bl)]
    figure("e.cpu.baseline", "1 KiB JSON echo, compression on, server CPU "
           "us/msg, against the baseline build %s" % build_dir,
           "%.2f us" % us_on, "baseline %.2f us" % us_bl, us_on / us_bl,
           "<= 0.85x", us_on / us_bl <= 0.85,
           "on %s baseline %s per-run ratios [%s]"
           % (spread(on, "server_us_per_msg"), spread(bl, "server_us_per_msg"),
              " ".join(pairs)), "--only e --baseline DIR")


def scenario_e(args, work):
    secs, runs = args.secs, args.runs
    per_run = secs + 1 + 15
    h = Httpd(work, "deflate").start()
    ht = Httpd(work, "deflate-takeover", location_extra=(
        "    WebSocketCompressionServerContextTakeover On\n"
        "    WebSocketCompressionClientContextTakeover On\n")).start()
    hb = (Httpd(work, "deflate-baseline", build_dir=args.baseline).start()
          if args.baseline else None)
    try:
        on, off, tk, bl = [], [], [], []
        for i in range(runs):
            log("e: run %d/%d" % (i + 1, runs))
            base = echo_args(secs, 64, "1k", "json", ["--deflate"])
            if hb:
                bl.append(wsload(base + ["--cpu-pid", hb.pid,
                                         "--cpu-children", hb.ws_url("/echo")],
                                 per_run + 30))
            on.append(wsload(base + ["--cpu-pid", h.pid, "--cpu-children",
                                     h.ws_url("/echo")], per_run + 30))
            off.append(wsload(base + ["--cpu-pid", h.pid, "--cpu-children",
                                      h.ws_url("/echo-nc")], per_run + 30))
            tk.append(wsload(echo_args(secs, 64, "1k", "json",
                                       ["--deflate-takeover"]) +
                             ["--cpu-pid", ht.pid, "--cpu-children",
                              ht.ws_url("/echo")], per_run + 30))
        for rs, name in ((on, "on"), (off, "off"), (tk, "takeover")):
            if any(int(r.get("pmd_conns", -1)) != (0 if name == "off" else 64)
                   for r in rs):
                log("e: %s runs negotiated permessage-deflate on %s conns"
                    % (name, [r.get("pmd_conns") for r in rs]))
        us_on, us_off, us_tk = (median(on, "server_us_per_msg"),
                                median(off, "server_us_per_msg"),
                                median(tk, "server_us_per_msg"))
        figure("e.cpu", "1 KiB JSON echo, 64 conns, compression on "
               "(no context takeover), server CPU us/msg", "%.2f us" % us_on,
               "compression off %.2f us" % us_off, us_on / us_off, "<= 3x",
               us_on / us_off <= 3,
               "on %s off %s" % (spread(on, "server_us_per_msg"),
                                 spread(off, "server_us_per_msg")), "--only e")
        if hb:
            baseline_figure(on, bl, args.baseline)
        figure("e.cpu.takeover", "same, both context takeovers on, server "
               "CPU us/msg", "%.2f us" % us_tk,
               "compression off %.2f us" % us_off, us_tk / us_off,
               command="--only e")
        for rs, name in ((on, "on"), (off, "off"), (tk, "takeover")):
            figure("e.rate.%s" % name, "1 KiB JSON echo msgs/s, compression %s"
                   % name, k(median(rs, "msgs_per_s")),
                   "compression off %s" % k(median(off, "msgs_per_s")),
                   median(rs, "msgs_per_s") / median(off, "msgs_per_s"),
                   command="--only e")
        for rs, name in ((on, "on"), (off, "off"), (tk, "takeover")):
            tx, rx = median(rs, "wire_tx_per_msg"), median(rs, "wire_rx_per_msg")
            figure("e.wire.%s" % name, "wire bytes/msg, compression %s: "
                   "client->server, server->client" % name,
                   "%.0f B, %.0f B" % (tx, rx), "payload 1024 B",
                   rx / 1024.0, command="--only e")
    finally:
        h.stop()
        ht.stop()
        if hb:
            hb.stop()
    p = subprocess.run([DEFMEM], capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise BenchError("deflate_memory failed: " + p.stderr)
    for line in p.stdout.splitlines():
        m = re.match(r"\|\s*(\d+)\s*\|\s*(on|off)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|"
                     r"\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|", line)
        if m:
            bits, ctx, dpeak, didle, ipeak, iidle, idle = m.groups()
            figure("e.zmem.w%s.%s" % (bits, ctx),
                   "zlib bytes/conn, window %s, context takeover %s: "
                   "idle, busy peak" % (bits, ctx),
                   "%.0f KiB idle, %.0f KiB peak"
                   % (int(idle) / 1024, (int(dpeak) + int(ipeak)) / 1024),
                   command="--only e")


def scenario_f(args, work, abusers=2):
    """The issue's target: p99 <= 20 ms and max <= 100 ms with 2 abusers,
    for highly compressible text (wsload's text pattern: ~54:1) and for
    JSON (~4.7:1)."""
    secs, runs = args.secs, args.runs
    h = Httpd(work, "fairness", event_threads=1).start()
    try:
        for typ in ("text", "json"):
            alone, loaded = [], []
            for i in range(runs):
                log("f: %s run %d/%d" % (typ, i + 1, runs))
                inno = echo_args(secs, 1, 32, "text") + [h.ws_url("/echo")]
                alone.append(wsload(inno, secs + 30))
                heavy = subprocess.Popen(
                    [WSLOAD, "-c", str(abusers), "-s", "8m", "-t", typ,
                     "--deflate", "--duration", str(secs + 4), "--warmup", "0",
                     "--timeout", "30", h.ws_url("/echo")],
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                    text=True, start_new_session=True)
                try:
                    time.sleep(1.5)          # the streams get going
                    loaded.append(wsload(inno, secs + 30))
                    out, _ = heavy.communicate(timeout=secs + 60)
                finally:
                    if heavy.poll() is None:
                        heavy.kill()
                        heavy.wait()
                load = parse_summary(out.strip().splitlines()[-1]) if out else {}
                loaded[-1]["abuser_msgs"] = load.get("msgs", 0)
            for key, target, limit in (("p99_us", "<= 20 ms", 20e3),
                                       ("max_us", "<= 100 ms", 100e3)):
                v, ref = median(loaded, key), median(alone, key)
                figure("f.%s.%s" % (typ, key[:-3]),
                       "innocent 32 B echo %s, %d clients streaming 8 MiB %s "
                       "with permessage-deflate" % (key[:-3], abusers, typ),
                       "%.1f ms" % (v / 1e3), "alone %.2f ms" % (ref / 1e3),
                       v / ref if ref else None, target, v <= limit,
                       "loaded %s alone %s" % (spread(loaded, key),
                                               spread(alone, key)), "--only f")
            figure("f.%s.abusers" % typ, "8 MiB messages echoed to the "
                   "streaming clients per run", "%.0f" % median(loaded,
                                                                "abuser_msgs"),
                   runs=spread(loaded, "abuser_msgs", "%.0f"),
                   command="--only f")
    finally:
        h.stop()


def scenario_i(args, work):
    import scale_scenarios
    scale_scenarios.scenario_i(args, work, sys.modules[__name__])


def scenario_k(args, work):
    import scale_scenarios
    scale_scenarios.scenario_k(args, work, sys.modules[__name__])


def scenario_r(args, work):
    import redis_scenario
    redis_scenario.scenario_r(args, work, sys.modules[__name__])


def scenario_s(args, work):
    import status_scenario
    status_scenario.scenario_s(args, work, sys.modules[__name__])


# ---- topics (g, h) -------------------------------------------------------------

def topics_httpd(work, name):
    """Two children (ServerLimit 2) of 25 threads, the topics' locations,
    and a DocumentRoot (with static32.txt, h's reference)."""
    h = Httpd(work, name, threads_per_child=25, server_limit=2, docroot=None,
              extra=(topics.sub_location() + topics.chat_location()
                     + topics.pub_location(extra="Require ip 127.0.0.1")))
    with open(os.path.join(h.docroot, "static32.txt"), "w") as f:
        f.write("x" * 31 + "\n")
    os.chmod(os.path.join(h.docroot, "static32.txt"), 0o644)
    return h.start(expect_children=2)


class Fanout:
    """bench/fanout: subscribers on sub_port, the publisher on pub_port."""

    def __init__(self, threads=2, duration=600):
        self.sub_port, self.pub_port = harness.free_port(), harness.free_port()
        self.proc = subprocess.Popen(
            [FANOUT, "-p", str(self.sub_port), "-q", str(self.pub_port),
             "-T", str(threads), "--duration", str(int(duration))],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        wait_listening(self.sub_port)
        wait_listening(self.pub_port)

    @property
    def pid(self):
        return self.proc.pid

    stop = TcpEcho.stop


def fanload(args, timeout, watch=None):
    """Runs fanload; returns its summary (numbers as floats).  watch(): a
    function called every 0.2 s while it runs (to sample the server)."""
    cmd = [FANLOAD] + [str(a) for a in args]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, stdin=subprocess.DEVNULL,
                         start_new_session=True)
    try:
        end = time.monotonic() + timeout
        while watch and p.poll() is None and time.monotonic() < end:
            watch()
            time.sleep(0.2)
        out, err = p.communicate(timeout=max(1, end - time.monotonic()))
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise BenchError("fanload did not finish in %ss: %s"
                         % (timeout, " ".join(cmd)))
    lines = out.strip().splitlines()
    if p.returncode != 0 or not lines:
        raise BenchError("fanload exit %d: %s\n%s" % (p.returncode,
                                                       " ".join(cmd),
                                                       err[-2000:]))
    if err.strip():
        log("fanload: " + err.strip()[-500:])
    return parse_summary(lines[-1])


def fan_args(subs, interval_us, secs, sub, pub):
    return ["--subs", subs, "-P", 2, "--rate", 2500, "--interval-us",
            interval_us, "--warmup", 1, "--duration", secs, "--drain", 180,
            "--sub", sub, "--pub", pub]


def scenario_g(args, work):
    subs, runs = args.subs, args.runs
    h = topics_httpd(work, "fanout")
    per_child = {}

    def sample_spread():
        fds = {pid: fd_count(pid) for pid in h.children()}
        if sum(fds.values()) > sum(per_child.values()):
            per_child.clear()
            per_child.update(fds)

    try:
        for interval, secs in ((1000, 2), (20000, 4)):
            raw, ws = [], []
            for i in range(runs):
                log("g: %d subscribers, a message every %d us, run %d/%d"
                    % (subs, interval, i + 1, runs))
                fo = Fanout(threads=2)
                try:
                    raw.append(fanload(fan_args(
                        subs, interval, secs,
                        "tcp://127.0.0.1:%d" % fo.sub_port,
                        "tcp://127.0.0.1:%d" % fo.pub_port)
                        + ["--cpu-pid", fo.pid], 400))
                finally:
                    fo.stop()
                # Published by a chat member (the plugin API), which keeps
                # the pace: a POST waits for its answer, and a saturated
                # server answers in more than a millisecond.  The
                # subscribers are pubsub's, of the room's topic.
                room = "g%d-%d" % (interval, i)
                ws.append(fanload(fan_args(
                    subs, interval, secs, h.url("/sub/chat/" + room, "ws"),
                    h.url("/chat/" + room, "ws"))
                    + ["--cpu-pid", h.pid, "--cpu-children"], 400,
                    watch=sample_spread if not per_child else None))
            report_fanout(subs, interval, raw, ws)
        figure("g.spread", "sockets per child (open fds) with %d subscribers"
               % subs, "%s" % sorted(per_child.values()), command="--only g")
    finally:
        h.stop()


def report_fanout(subs, interval, raw, ws):
    tag = "%dms" % (interval // 1000)
    every = "a 32 B message every %d ms" % (interval // 1000)
    for rs, name in ((raw, "raw"), (ws, "ws")):
        bad = [r for r in rs if r.get("incomplete", 1) or r.get("closed", 1)
               or r.get("opened", 0) < subs]
        if bad:
            log("g: %s runs with subscribers missing messages or closed: %s"
                % (name, [(r.get("opened"), r.get("incomplete"),
                           r.get("closed")) for r in bad]))
    us, raw_us = (median(ws, "server_us_per_delivery"),
                  median(raw, "server_us_per_delivery"))
    figure("g.cpu.%s" % tag, "%d subscribers over 2 children, %s: server "
           "CPU per delivered message" % (subs, every), "%.3f us" % us,
           "raw fan-out %.3f us" % raw_us, us / raw_us,
           "<= 1.3x" if interval == 1000 else None,
           us / raw_us <= 1.3 if interval == 1000 else None,
           "ws %s raw %s" % (spread(ws, "server_us_per_delivery"),
                             spread(raw, "server_us_per_delivery")),
           "--only g")
    for key in ("p50_us", "p99_us"):
        v, ref = median(ws, key), median(raw, key)
        figure("g.%s.%s" % (key[:3], tag), "%s, publish to last delivery %s"
               % (every, key[:3]), "%.1f ms" % (v / 1e3),
               "raw fan-out %.1f ms" % (ref / 1e3), v / ref if ref else None,
               runs="ws %s raw %s" % (spread(ws, key, "%.0f"),
                                      spread(raw, key, "%.0f")),
               command="--only g")
    v, ref = median(ws, "pub_per_s"), median(raw, "pub_per_s")
    figure("g.rate.%s" % tag, "%s: messages published per second" % every,
           "%.0f" % v, "raw fan-out %.0f" % ref, v / ref,
           runs="deliveries/s ws %s raw %s" % (
               spread(ws, "deliveries_per_s", "%.0f"),
               spread(raw, "deliveries_per_s", "%.0f")), command="--only g")


def scenario_h(args, work):
    secs, runs = args.secs, args.runs
    h = topics_httpd(work, "publishes")
    try:
        res = {k: [] for k in ("pub", "static", "chat", "echo")}
        for i in range(runs):
            log("h: run %d/%d" % (i + 1, runs))
            common = ["--interval-us", 0, "--warmup", 1, "--duration", secs,
                      "-P", 1, "--cpu-pid", h.pid, "--cpu-children"]
            res["pub"].append(fanload(common + [
                "--subs", 1, "--conns", 4, "--sub", h.url("/sub/h%d" % i, "ws"),
                "--pub", h.url("/pub/h%d" % i)], secs + 60))
            res["static"].append(fanload(common + [
                "--subs", 0, "--conns", 4, "--sub", h.url("/sub/none", "ws"),
                "--get", "--pub", h.url("/static32.txt")], secs + 60))
            res["chat"].append(fanload(common + [
                "--subs", 1, "--sub", h.url("/chat/h%d" % i, "ws"),
                "--pub", h.url("/chat/h%d" % i, "ws")], secs + 60))
            res["echo"].append(fanload(common + [
                "--subs", 0, "--sub", h.url("/sub/none", "ws"), "--echo",
                "--pub", h.url("/echo", "ws")], secs + 60))
        m = {k: median(v, "pub_per_s") for k, v in res.items()}
        figure("h.pub", "POSTs to /pub per second, 4 connections, 1 "
               "subscriber", k(m["pub"]), "GET of a 32 B file %s"
               % k(m["static"]), m["pub"] / m["static"],
               runs="pub %s static %s" % (spread(res["pub"], "pub_per_s"),
                                          spread(res["static"], "pub_per_s")),
               command="--only h")
        d = median(res["chat"], "deliveries_per_s")
        e = median(res["echo"], "echoes_per_s")
        figure("h.plugin", "messages a chat member publishes per second "
               "(plugin API), delivered to 1 other member", k(d),
               "echo plugin %s" % k(e), d / e,
               runs="chat %s echo %s" % (
                   spread(res["chat"], "deliveries_per_s"),
                   spread(res["echo"], "echoes_per_s")), command="--only h")
        for key, ref in (("pub", "static"), ("chat", "echo")):
            us, ref_us = (median(res[key], "server_us_per_pub"),
                          median(res[ref], "server_us_per_pub"))
            figure("h.cpu.%s" % key, "server CPU per %s" % (
                "POST to /pub" if key == "pub" else "chat message published"),
                "%.1f us" % us, "%s %.1f us" % (ref, ref_us), us / ref_us,
                command="--only h")
    finally:
        h.stop()


# ---- docs ----------------------------------------------------------------------

def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "%d x %s, Linux %s, %s" % (os.cpu_count(), cpu, platform.release(),
                                      subprocess.run(
                                          [APACHE, "-v"], capture_output=True,
                                          text=True).stdout.split("\n")[0]
                                      .replace("Server version: ", ""))


def write_docs(args):
    with open(DOC) as f:
        text = f.read()
    if DOC_BEGIN not in text or DOC_END not in text:
        raise BenchError("%s lacks the results markers" % DOC)
    rows = ["", "Run of %s on %s; %d runs of %d s per figure, medians."
            % (datetime.date.today().isoformat(), machine(), args.runs,
               args.secs), "",
            "| id | figure | value | reference | ratio | target | |",
            "|---|---|---|---|---|---|---|"]
    for f in FIGURES:
        rows.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            f["id"], f["what"], f["value"], f["ref"], f["ratio"],
            f["target"], f["verdict"]))
    rows.append("")
    head, rest = text.split(DOC_BEGIN, 1)
    _, tail = rest.split(DOC_END, 1)
    with open(DOC, "w") as f:
        f.write(head + DOC_BEGIN + "\n".join(rows) + "\n" + DOC_END + tail)
    log("wrote %s" % DOC)


# ---- main ----------------------------------------------------------------------

def check_built(which):
    need = [WSLOAD, TCPECHO, MODULE, ECHO]
    if "g" in which or "h" in which:
        need += [FANOUT, FANLOAD, harness.plugin_so("pubsub"),
                 harness.plugin_so("chat")]
    if "d" in which:
        need.append(CODEC)
    if "e" in which:
        need.append(DEFMEM)
    missing = [p for p in need if not os.path.exists(p)]
    if missing:
        raise BenchError("not built: %s (run `make bench`)"
                         % ", ".join(os.path.relpath(p, REPO)
                                     for p in missing))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default=",".join(SCENARIOS),
                    help="comma-separated scenarios: %s" % ",".join(SCENARIOS))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--secs", type=int, default=5,
                    help="measured seconds per echo run (plus 1 s warmup)")
    ap.add_argument("--write-docs", action="store_true",
                    help="replace the results block of docs/performance.md")
    ap.add_argument("--children", type=int, default=8,
                    help="c100k: httpd children (ServerLimit), default 8")
    ap.add_argument("--conns-i", type=int, default=100000,
                    help="i: idle sockets, default 100000")
    ap.add_argument("--subs", type=int, default=10000,
                    help="g: subscribers of the topic, default 10000")
    ap.add_argument("--baseline", metavar="DIR",
                    help="e: also measure the module and echo plugin of "
                    "another build tree (e.g. an older commit's `git "
                    "archive` built with `make build`), runs interleaved")
    ap.add_argument("--keep", action="store_true",
                    help="keep the temp dir (configs, error logs)")
    args = ap.parse_args(argv)
    which = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in which if s not in SCENARIOS]
    if bad or not 1 <= args.runs <= 9 or not 1 <= args.secs <= 30:
        ap.error("bad --only/--runs/--secs")
    check_built(which)
    work = tempfile.mkdtemp(prefix="wsbench-")
    os.chmod(work, 0o755)
    def on_term(signum, frame):
        raise KeyboardInterrupt()
    signal.signal(signal.SIGTERM, on_term)
    failures = 0
    log("machine: %s" % machine())
    try:
        steps = [("a", lambda: scenario_ab(args, work, which)),
                 ("d", lambda: scenario_d(args, work)),
                 ("e", lambda: scenario_e(args, work)),
                 ("f", lambda: scenario_f(args, work)),
                 ("r", lambda: scenario_r(args, work)),
                 ("s", lambda: scenario_s(args, work)),
                 ("g", lambda: scenario_g(args, work)),
                 ("h", lambda: scenario_h(args, work)),
                 ("k", lambda: scenario_k(args, work)),
                 ("i", lambda: scenario_i(args, work)),
                 ("c", lambda: scenario_c(args, work)),
                 ("c100k", lambda: scenario_c100k(args, work))]
        done_ab = False
        for name, fn in steps:
            if name == "a":
                if ("a" in which or "b" in which) and not done_ab:
                    done_ab = True
                else:
                    continue
            elif name not in which:
                continue
            try:
                fn()
            except BenchError as e:
                failures += 1
                print("%-8s FAILED: %s" % (name, e), flush=True)
    finally:
        if args.keep:
            log("kept %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    failures += len(PROBLEMS)
    if args.write_docs:
        write_docs(args)
    misses = sum(1 for f in FIGURES if f["verdict"] == "MISS")
    print("summary: %d figures, %d PASS, %d MISS, %d scenario failures"
          % (len(FIGURES), sum(1 for f in FIGURES if f["verdict"] == "PASS"),
             misses, failures), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
