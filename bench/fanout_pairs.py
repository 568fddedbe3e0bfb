#!/usr/bin/python3
"""Fan-out (g) before and after: per iteration, the raw reference
(bench/fanout), then the httpd of each build given, one after the other,
each through fanload with bench/run.py's g arguments; prints each run's
CPU per delivery and its ratio to that iteration's raw reference.

    bench/fanout_pairs.py RUNS INTERVAL_US SECS NAME=BUILD_DIR...

BUILD_DIR: a tree laid out as the repository after `make build` (at
least .libs/mod_websocket.so; the plugins are this tree's).  On a shared
machine the raw reference moves from run to run; builds measured in the
same iteration are the fairest comparison (docs/performance.md, g)."""
import os
import sys
import tempfile

import run
from run import Httpd, Fanout, fanload, fan_args, topics


def main(argv):
    if len(argv) < 4:
        sys.exit(__doc__)
    runs, interval, secs = int(argv[0]), int(argv[1]), int(argv[2])
    builds = [a.split("=", 1) for a in argv[3:]]
    work = tempfile.mkdtemp(prefix="wsfanpairs-")
    os.chmod(work, 0o755)
    subs = 10000
    for i in range(runs):
        fo = Fanout(threads=2)
        try:
            raw = fanload(fan_args(subs, interval, secs,
                                   "tcp://127.0.0.1:%d" % fo.sub_port,
                                   "tcp://127.0.0.1:%d" % fo.pub_port)
                          + ["--cpu-pid", fo.pid], 400)
        finally:
            fo.stop()
        line = ["run %d: raw %.3f us" % (i, raw["server_us_per_delivery"])]
        for name, build in builds:
            h = Httpd(work, "%s%d" % (name, i), threads_per_child=25,
                      server_limit=2, build_dir=build,
                      extra=topics.sub_location() + topics.chat_location())
            h.start(expect_children=2)
            try:
                room = "p%d-%d" % (interval, i)
                r = fanload(fan_args(subs, interval, secs,
                                     h.url("/sub/chat/" + room, "ws"),
                                     h.url("/chat/" + room, "ws"))
                            + ["--cpu-pid", h.pid, "--cpu-children"], 400)
            finally:
                h.stop()
            us = r["server_us_per_delivery"]
            line.append("%s %.3f us (%.2fx, p50 %.0f ms%s)" % (
                name, us, us / raw["server_us_per_delivery"],
                r["p50_us"] / 1e3, "" if not r.get("incomplete", 1)
                and not r.get("closed", 1) else ", INCOMPLETE"))
        line.append("load %.1f" % os.getloadavg()[0])
        print("  ".join(line), flush=True)
    return 0 if not run.PROBLEMS else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
