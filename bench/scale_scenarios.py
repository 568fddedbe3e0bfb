"""bench/run.py scenarios i and k: timers at scale, handshake storms.

  i   100,000 idle WebSockets over --children children (the 20,000
      descriptors a process may hold here need 6 at least): the CPU time
      of the children over 60 s, with WebSocketPingInterval Off (the
      default: an idle socket has no timer at all) and 30 (every socket
      gets a Ping every 30 s, 200,000 in the window); references: the
      same children over the same time with no socket open (per 60 s),
      and a 32 B echo's server CPU per message on the same httpd (a
      Ping and its Pong against a message and its echo).
  k   handshake storms, one child: connect, upgrade, one 32 B echo,
      Close, end of TCP (wsload --cycle, 16 at a time) against a GET of
      a 32-byte file on a new connection (wsload --raw-get, same client,
      same server): operations per second and server CPU per operation;
      then 10,000 idle clients and `apachectl graceful`: the time from
      the first Close until every client has reconnected and echoed a
      message, against the time the same client took to open the 10,000
      in the first place.
"""

import os
import subprocess
import time

PING_WINDOW = 60          # s of CPU sampled with the sockets idle
SETTLE = 5                # s after the last socket opened
EMPTY_WINDOW = 20         # s of CPU sampled with no socket open
RECONNECT_CLIENTS = 10000


def children_cpu_s(pids):
    """utime + stime of these processes, in seconds (gone ones count 0)."""
    hz = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / hz


def cpu_over(pids, secs):
    before = children_cpu_s(pids)
    time.sleep(secs)
    return children_cpu_s(pids) - before


def wait_file(path, proc, budget, run):
    end = time.monotonic() + budget
    while time.monotonic() < end and proc.poll() is None:
        if os.path.exists(path):
            return
        time.sleep(0.1)
    raise run.BenchError("wsload never reported all connections open")


def finish(proc, budget, run, what):
    try:
        out, err = proc.communicate(timeout=budget)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise run.BenchError("%s did not finish in %ds" % (what, budget))
    if proc.returncode != 0:
        run.log("%s exit %d:\n%s" % (what, proc.returncode, err[-1500:]))
    lines = out.strip().splitlines()
    if not lines:
        raise run.BenchError("%s printed nothing:\n%s" % (what, err[-1500:]))
    return run.parse_summary(lines[-1])


def start_wsload(run, args):
    return subprocess.Popen([run.WSLOAD] + [str(a) for a in args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, stdin=subprocess.DEVNULL)


# ---- i -------------------------------------------------------------------------

def idle_cpu_run(run, h, work, tag, conns):
    """Opens conns idle sockets, samples the children's CPU over
    PING_WINDOW s; returns (cpu_s, pings, opened, errors)."""
    ready = os.path.join(work, "ready-i-%s" % tag)
    procs = 8
    hold = SETTLE + PING_WINDOW + 5
    p = start_wsload(run, ["--idle", "-c", conns, "-P", procs, "--hold", hold,
                           "--rate", 1500, "--timeout", 20, "--ready-file",
                           ready, h.ws_url("/echo")])
    try:
        wait_file(ready, p, conns / (1500 * procs) + 120, run)
        time.sleep(SETTLE)
        cpu = cpu_over(h.children(), PING_WINDOW)
    except BaseException:
        p.kill()
        p.communicate()
        raise
    r = finish(p, hold + 120, run, "wsload --idle")
    os.unlink(ready)
    wait_drained(run, h)
    return cpu, r.get("pings", 0), r.get("opened", 0), r.get("errors", -1)


def wait_drained(run, h, timeout=120):
    """Until the children have closed the client's sockets (the next
    measurement starts from an empty server)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if all(run.fd_count(pid) < 200 for pid in h.children()):
            return
        time.sleep(0.5)
    raise run.BenchError("httpd %s still holds sockets %ds after the "
                         "clients left" % (h.name, timeout))


def scenario_i(args, work, run):
    conns = args.conns_i
    servers = {}
    try:
        for ping in ("Off", "30"):
            # the Pings are configured where the clients go: /echo
            servers[ping] = run.Httpd(
                work, "i-ping-%s" % ping, threads_per_child=25,
                server_limit=args.children,
                location_extra="    WebSocketPingInterval %s\n" % ping
                ).start(expect_children=args.children)
        res = {"Off": [], "30": []}
        empty, echo_us = [], []
        for i in range(args.runs):
            for ping, h in servers.items():
                run.log("i: run %d/%d, %d idle sockets, WebSocketPingInterval"
                        " %s" % (i + 1, args.runs, conns, ping))
                if ping == "30":
                    empty.append(cpu_over(h.children(), EMPTY_WINDOW)
                                 * PING_WINDOW / EMPTY_WINDOW)
                    e = run.wsload(run.echo_args(3, 64, 32) +
                                   ["--cpu-pid", h.pid, "--cpu-children",
                                    h.ws_url("/echo-nc")], 60)
                    echo_us.append(e["server_us_per_msg"])
                res[ping].append(idle_cpu_run(run, h, work, ping, conns))
        report_i(run, conns, args.children, res, empty, echo_us)
    finally:
        for h in servers.values():
            h.stop()


def report_i(run, conns, children, res, empty, echo_us):
    def med(rs, k):
        return run.statistics.median(r[k] for r in rs)
    off = [dict(cpu=c, pings=n, opened=o, errors=e) for c, n, o, e in res["Off"]]
    on = [dict(cpu=c, pings=n, opened=o, errors=e) for c, n, o, e in res["30"]]
    ref = run.statistics.median(empty)
    all_open = all(r["opened"] == conns and r["errors"] == 0 for r in off + on)
    run.figure("i.open", "%d idle sockets over %d children, all open and "
               "answered (every run)" % (conns, children),
               "%d" % min(r["opened"] for r in off + on), "%d asked" % conns,
               None, "all", all_open, command="--only i")
    cpu_off = med(off, "cpu")
    run.figure("i.cpu.noping", "children's CPU over %d s, %d idle sockets, "
               "WebSocketPingInterval Off" % (PING_WINDOW, conns),
               "%.2f s" % cpu_off, "no socket open %.2f s" % ref,
               cpu_off / ref if ref >= 0.05 else None,
               runs="off %s empty %s" % (run.spread(off, "cpu", "%.2f"),
                                         "[" + " ".join("%.2f" % e
                                                        for e in empty) + "]"),
               command="--only i")
    cpu_on, pings = med(on, "cpu"), med(on, "pings")
    run.figure("i.cpu.ping30", "children's CPU over %d s, %d idle sockets, "
               "WebSocketPingInterval 30 (%d Pings answered)"
               % (PING_WINDOW, conns, pings), "%.2f s" % cpu_on,
               "Off %.2f s" % cpu_off, cpu_on / cpu_off if cpu_off else None,
               runs="30 %s" % run.spread(on, "cpu", "%.2f"),
               command="--only i")
    per_ping = [(a["cpu"] - cpu_off) * 1e6 / a["pings"] for a in on
                if a["pings"]]
    if per_ping:
        pp, eu = run.statistics.median(per_ping), run.statistics.median(echo_us)
        run.figure("i.per_ping", "CPU per Ping sent and Pong read (the "
                   "difference over the Pings)", "%.2f us" % pp,
                   "32 B echo %.2f us/msg" % eu, pp / eu,
                   runs="[" + " ".join("%.2f" % x for x in per_ping) + "]",
                   command="--only i")


# ---- k -------------------------------------------------------------------------

def scenario_k(args, work, run):
    h = run.Httpd(work, "k", threads_per_child=25, server_limit=2,
                  start_servers=1, docroot=None)
    with open(os.path.join(h.docroot, "small32.txt"), "w") as f:
        f.write("x" * 31 + "\n")
    os.chmod(os.path.join(h.docroot, "small32.txt"), 0o644)
    h.start()
    try:
        ws, get = [], []
        for i in range(args.runs):
            run.log("k: run %d/%d, handshake cycles and GETs" % (i + 1,
                                                                 args.runs))
            common = ["-c", 16, "--duration", args.secs, "--warmup", 1,
                      "--cpu-pid", h.pid, "--cpu-children"]
            get.append(run.wsload(["--raw-get", "/small32.txt"] + common +
                                  [h.url("/")], args.secs + 60))
            ws.append(run.wsload(["--cycle"] + common +
                                 [h.ws_url("/echo-nc")], args.secs + 60))
        report_k_rate(run, ws, get)
        rec = []
        for i in range(args.runs):
            run.log("k: run %d/%d, %d clients across a graceful restart"
                    % (i + 1, args.runs, RECONNECT_CLIENTS))
            rec.append(reconnect_run(run, h, work, i))
        report_k_reconnect(run, rec)
    finally:
        h.stop()


def report_k_rate(run, ws, get):
    m, ref = run.median(ws, "cycles_per_s"), run.median(get, "cycles_per_s")
    ok = all(r["errors"] == 0 for r in ws + get)
    run.figure("k.rate", "handshakes/s, one child, 16 clients (connect, "
               "upgrade, one echo, Close)", "%.0f/s" % m,
               "static GET %.0f/s" % ref, m / ref, ok=ok if not ok else None,
               runs="ws %s get %s" % (run.spread(ws, "cycles_per_s", "%.0f"),
                                      run.spread(get, "cycles_per_s", "%.0f")),
               command="--only k")
    us = run.median(ws, "server_us_per_cycle")
    ref_us = run.median(get, "server_us_per_cycle")
    run.figure("k.cpu", "server CPU per handshake cycle", "%.0f us" % us,
               "static GET %.0f us" % ref_us, us / ref_us, "<= 1.3x",
               us / ref_us <= 1.3,
               runs="ws %s get %s" % (
                   run.spread(ws, "server_us_per_cycle", "%.0f"),
                   run.spread(get, "server_us_per_cycle", "%.0f")),
               command="--only k")


def reconnect_run(run, h, work, i):
    """10,000 idle clients; a graceful restart once all are open; they
    come back as soon as they are closed."""
    ready = os.path.join(work, "ready-k-%d" % i)
    p = start_wsload(run, ["--reconnect", "-c", RECONNECT_CLIENTS, "-P", 2,
                           "--rate", 100000, "--max-pending", 1000,
                           "--hold", 90, "--timeout", 20, "--retry-delay", 50,
                           "--ready-file", ready, "--cpu-pid", h.pid,
                           "--cpu-children", h.ws_url("/echo-nc")])
    try:
        wait_file(ready, p, 120, run)
        time.sleep(1)
        h.graceful(wait=60)
    except BaseException:
        p.kill()
        p.communicate()
        raise
    r = finish(p, 200, run, "wsload --reconnect")
    os.unlink(ready)
    wait_drained(run, h)
    r["reconnect_s"] = (r["last_back"] - r["first_close"]
                        if r.get("back") and r.get("last_back") else 0.0)
    return r


def report_k_reconnect(run, rec):
    back = min(int(r.get("back", 0)) for r in rec)
    s, ref = run.median(rec, "reconnect_s"), run.median(rec, "connect_s")
    ok = back == RECONNECT_CLIENTS and all(r.get("errors", 1) == 0
                                           for r in rec)
    run.figure("k.graceful", "%d clients back after apachectl graceful "
               "(first Close to last echo)" % RECONNECT_CLIENTS,
               "%.2f s" % s, "first opening %.2f s" % ref,
               s / ref if ref else None, "all back", ok,
               runs="back %s reconnect %s first %s refused %s" % (
                   run.spread(rec, "back", "%d"),
                   run.spread(rec, "reconnect_s", "%.2f"),
                   run.spread(rec, "connect_s", "%.2f"),
                   run.spread(rec, "refused", "%d")),
               command="--only k")
    run.figure("k.graceful.p99", "a client's time from its Close to its "
               "echo on the new child, p50 / p99",
               "%.0f / %.0f ms" % (run.median(rec, "p50_us") / 1e3,
                                   run.median(rec, "p99_us") / 1e3),
               command="--only k")
