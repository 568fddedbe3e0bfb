#!/usr/bin/python3
"""The exec plugin's figure: 32 B text messages echoed through `cat`
(one program per connection, text mode: each message a line to its stdin,
each line of its stdout a message) against the echo plugin, in the same
httpd, the runs interleaved.

    /usr/bin/python3 bench/exec_rate.py [--runs 3] [--secs 5] [--conns 16]
                                        [--depth 1]

Needs the module, the echo and exec plugins and bench/wsload built
(`make build bench/wsload`).  Prints one line per figure, as bench/run.py
does; docs/performance.md ("The exec plugin") has the last run's.
"""

import argparse
import os
import shutil
import sys
import tempfile

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)

import run  # noqa: E402  (bench/run.py: Httpd, wsload, figure)
from run import harness  # noqa: E402

EXEC = harness.plugin_so("exec")


class ExecHttpd(run.Httpd):
    """bench/run.py's httpd (one child of 25 threads), with /cat: cat
    through the exec plugin, as many programs as connections."""

    def __init__(self, workdir, conns):
        super().__init__(workdir, "exec", extra="""
<Location /cat>
    SetHandler websocket-handler
    WebSocketHandler "{exec}" exec_init
    WebSocketParam command /bin/cat
    WebSocketParam max_processes {n}
    WebSocketOriginCheck Off
</Location>
""".format(exec=EXEC, n=conns + 8))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--secs", type=int, default=5)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--depth", type=int, default=1)
    args = ap.parse_args(argv)
    for need in (run.WSLOAD, run.MODULE, run.ECHO, EXEC):
        if not os.path.exists(need):
            print("not built: %s (make build bench/wsload)" % need,
                  file=sys.stderr)
            return 1
    work = tempfile.mkdtemp(prefix="wsbench-exec-")
    os.chmod(work, 0o755)
    h = None
    try:
        h = ExecHttpd(work, args.conns).start()
        wsargs = ["-c", args.conns, "-s", 32, "-t", "text", "-d", args.depth,
                  "--duration", args.secs, "--warmup", 1, "--timeout", 10,
                  "--cpu-pid", h.pid, "--cpu-children"]
        results = {"echo": [], "cat": []}
        for i in range(args.runs):
            for path in ("echo", "cat"):
                run.log("exec: run %d/%d, /%s" % (i + 1, args.runs, path))
                r = run.wsload(wsargs + [h.ws_url("/" + path)],
                               args.secs + 40)
                if r.get("errors", 1) != 0:
                    raise run.BenchError("wsload errors on /%s: %s"
                                         % (path, r["_stderr"][-1500:]))
                results[path].append(r)
        what = "32 B text, %d conns, depth %d" % (args.conns, args.depth)
        cat, echo = (run.median(results[k], "msgs_per_s")
                     for k in ("cat", "echo"))
        run.figure("x.rate", what + ", through cat (exec), msgs/s",
                   run.k(cat), "echo plugin %s" % run.k(echo), cat / echo,
                   runs="cat %s echo %s" % (
                       run.spread(results["cat"], "msgs_per_s"),
                       run.spread(results["echo"], "msgs_per_s")))
        cat_p50, echo_p50 = (run.median(results[k], "p50_us")
                             for k in ("cat", "echo"))
        run.figure("x.p50", what + ", p50 round trip through cat",
                   "%.0f us" % cat_p50, "echo plugin %.0f us" % echo_p50,
                   cat_p50 / echo_p50,
                   runs="cat %s echo %s" % (
                       run.spread(results["cat"], "p50_us", "%.0f"),
                       run.spread(results["echo"], "p50_us", "%.0f")))
        cat_us, echo_us = (run.median(results[k], "server_us_per_msg")
                           for k in ("cat", "echo"))
        run.figure("x.cpu", what + ", CPU per message (httpd and the cat "
                   "programs)", "%.1f us" % cat_us,
                   "echo plugin %.1f us" % echo_us, cat_us / echo_us,
                   runs="cat %s echo %s" % (
                       run.spread(results["cat"], "server_us_per_msg"),
                       run.spread(results["echo"], "server_us_per_msg")))
    except run.BenchError as e:
        print("x        FAILED: %s" % e, flush=True)
        return 1
    finally:
        if h is not None:
            h.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 1 if run.PROBLEMS else 0


if __name__ == "__main__":
    sys.exit(main())
