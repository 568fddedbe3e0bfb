"""bench/run.py scenarios c and c100k: idle sockets.

  c       10,000 idle WebSockets on one child of 25 threads
  c100k   100,000 over --children children (docs/tuning.md)

Each opens the sockets with `wsload --idle`, samples the children's RSS
and threads before and once the server has settled, then echoes one
message on every socket.  B is bench/run.py's module (its Httpd, figure,
wsload helpers).
"""

import os
import subprocess
import time


def httpd_mem(B, h):
    """The children's total RSS (KiB) and each child's thread ids."""
    kids = h.children()
    return (sum(B.vm_rss_kib(pid) for pid in kids),
            {pid: B.thread_ids(pid) for pid in kids})


def settled_mem(B, h, rss0, budget):
    """httpd's memory once every socket is open and the server has settled:
    the hand-overs and the detaching of idle connections (ws_detach.c)
    trail a storm of handshakes by seconds on this machine.  Samples every
    second until the children's RSS moves by less than 1% of what the
    sockets added, at most budget seconds; returns (rss, threads, seconds
    waited)."""
    start = time.monotonic()
    time.sleep(1.0)
    last, thr = httpd_mem(B, h)
    while time.monotonic() - start < budget:
        time.sleep(1.0)
        rss, thr = httpd_mem(B, h)
        if abs(rss - last) <= 0.01 * max(rss - rss0, 1):
            return rss, thr, time.monotonic() - start
        last = rss
    return last, thr, time.monotonic() - start


def idle_run(B, h, work, conns, procs, hold, rate, fid, ping_target=True):
    """Opens conns idle sockets; samples httpd's RSS and threads before and
    once all are open; then one echo on each.  Returns the figures' data."""
    # A child starts its worker threads one by one after it answers: on a
    # busy machine "before" would otherwise count threads still starting.
    B.wait_for(lambda: all(len(B.thread_ids(pid)) >= h.threads_per_child
                         for pid in h.children()),
             "every child's %d worker threads" % h.threads_per_child,
             timeout=60)
    rss0, thr0 = httpd_mem(B, h)
    slab0 = B.meminfo_kib("Slab")
    ready = os.path.join(work, "ready-%s" % fid)
    args = ["--idle", "-c", conns, "-P", procs, "--hold", hold,
            "--ping-after", "--rate", rate, "--timeout", 20,
            "--ready-file", ready, "--cpu-pid", h.pid, "--cpu-children",
            h.ws_url()]
    cmd = [B.WSLOAD] + [str(a) for a in args]
    budget = conns / (rate * procs) + hold + 90
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, stdin=subprocess.DEVNULL)
    sample = None
    try:
        end = time.monotonic() + budget
        while time.monotonic() < end and p.poll() is None:
            if os.path.exists(ready):
                rss1, thr1, settle = settled_mem(B, h, rss0, hold - 2)
                fds = {pid: B.fd_count(pid) for pid in h.children()}
                sample = (rss1, thr1, B.meminfo_kib("Slab"), fds, settle)
                break
            time.sleep(0.1)
        out, err = p.communicate(timeout=max(10, end - time.monotonic()))
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise B.BenchError("wsload --idle did not finish in %ds" % budget)
    r = B.parse_summary(out.strip().splitlines()[-1]) if out.strip() else {}
    if p.returncode != 0:
        B.log("wsload --idle exit %d:\n%s" % (p.returncode, err[-2000:]))
    if sample is None:
        raise B.BenchError("wsload never reported all connections open:\n"
                         + err[-2000:])
    rss1, thr1, slab1, fds, settle = sample
    return dict(r=r, rss0=rss0, rss1=rss1, thr0=thr0, thr1=thr1, settle=settle,
                slab_delta=slab1 - slab0, fds=fds, stderr=err,
                cmd=" ".join(os.path.relpath(a, B.REPO) if a.startswith(B.REPO)
                             else a for a in cmd))


def report_idle(B, fid, d, conns, note):
    r = d["r"]
    opened = int(r.get("opened", 0))
    B.figure("%s.open" % fid, "%d idle sockets (%s): opened" % (conns, note),
           "%d" % opened, "%d asked" % conns, opened / conns, "all",
           opened == conns, "connect %.1f s" % r.get("connect_s", 0),
           "--only %s" % fid)
    per = (d["rss1"] - d["rss0"]) / conns
    B.figure("%s.rss" % fid, "httpd RSS per idle socket (children, VmRSS)",
           "%.2f KiB" % per, "%d -> %d KiB" % (d["rss0"], d["rss1"]),
           None, "<= 8 KiB", per <= 8, "settled %.0f s after the last "
           "connect" % d["settle"], command="--only %s" % fid)
    B.figure("%s.kmem" % fid, "kernel slab per socket pair (both ends, "
           "machine-wide)", "%.2f KiB" % (d["slab_delta"] / conns),
           command="--only %s" % fid)
    t0 = sorted(len(t) for t in d["thr0"].values())
    t1 = sorted(len(t) for t in d["thr1"].values())
    added = sum(len(t - d["thr0"].get(pid, set()))
                for pid, t in d["thr1"].items())
    B.figure("%s.threads" % fid, "threads per child before -> after",
           "%s -> %s" % (t0, t1), ok=(added == 0),
           target="none added", command="--only %s" % fid)
    B.figure("%s.spread" % fid, "sockets per child (open fds)",
           "%s" % sorted(d["fds"].values()), command="--only %s" % fid)
    echoed = int(r.get("echoed", 0))
    B.figure("%s.ping" % fid, "echo on every socket after the hold",
           "%d echoed" % echoed, "%d open" % opened,
           echoed / conns, "all", echoed == conns and r.get("errors", 1) == 0,
           "errors %d" % r.get("errors", -1), "--only %s" % fid)


def scenario_c(args, work, B):
    h = B.Httpd(work, "c10k", threads_per_child=25, server_limit=1).start()
    try:
        B.log("c: 10,000 idle sockets")
        d = idle_run(B, h, work, 10000, 2, 20, 2000, "c")
        report_idle(B, "c", d, 10000, "1 child x 25 threads")
    finally:
        h.stop()


def scenario_c100k(args, work, B):
    children = args.children
    h = B.Httpd(work, "c100k", threads_per_child=25,
                server_limit=children).start(expect_children=children)
    try:
        B.log("c100k: 100,000 idle sockets (%d children, 8 client procs)"
              % children)
        d = idle_run(B, h, work, 100000, max(8, children), 10, 1500, "c100k")
        report_idle(B, "c100k", d, 100000,
                    "%d children x 25 threads" % children)
        if d["stderr"].strip():
            B.log("wsload stderr:\n" + d["stderr"][-1500:])
    finally:
        h.stop()
