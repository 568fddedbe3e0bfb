"""bench/run.py scenario s: what the WebSocket counters of server-status
(ws_stats.c) cost on the 32-byte echo.  They run only when mod_status is
loaded, so the same echo runs against two httpds that differ only by
`LoadModule status_module`, in turn, the order swapped every run.

  s.cpu   server CPU us/msg with mod_status loaded; reference: without.
          The ratio is the median of each run's ratio: a run's two
          measures are next to each other in time, under the same load
          from the rest of the machine, which the ratio of the medians
          would not be.
  s.rate  msgs/s with and without, as INFO.
"""

import statistics

import harness


def scenario_s(args, work, run):
    """run: bench/run.py's module (Httpd, wsload, figure, log, ...)."""
    secs, runs = args.secs, args.runs
    per_run = secs + 1 + 15
    off = run.Httpd(work, "no-status").start()
    on = run.Httpd(work, "status", extra="LoadModule status_module "
                   "%s/mod_status.so" % harness.MODDIR).start()
    try:
        res = {"on": [], "off": []}
        for i in range(runs):
            run.log("s: run %d/%d" % (i + 1, runs))
            order = (("on", on), ("off", off)) if i % 2 == 0 \
                else (("off", off), ("on", on))
            for name, h in order:
                res[name].append(run.wsload(
                    run.echo_args(secs, 64, 32)
                    + ["--cpu-pid", h.pid, "--cpu-children", h.ws_url()],
                    per_run + 30))
        report(run, res)
    finally:
        on.stop()
        off.stop()


def report(run, res):
    key = "server_us_per_msg"
    us_on, us_off = run.median(res["on"], key), run.median(res["off"], key)
    ratios = [a[key] / b[key] for a, b in zip(res["on"], res["off"])]
    ratio = statistics.median(ratios)
    run.figure("s.cpu", "32 B echo, 64 conns, server CPU us/msg with "
               "mod_status loaded (WebSocket counters on)", "%.2f us" % us_on,
               "without mod_status %.2f us" % us_off, ratio,
               "<= 1.05x", ratio <= 1.05,
               "on %s off %s, ratio per run %s"
               % (run.spread(res["on"], key), run.spread(res["off"], key),
                  "[" + " ".join("%.3f" % r for r in ratios) + "]"),
               "--only s")
    m_on = run.median(res["on"], "msgs_per_s")
    m_off = run.median(res["off"], "msgs_per_s")
    run.figure("s.rate", "32 B echo msgs/s with mod_status loaded",
               run.k(m_on), "without mod_status %s" % run.k(m_off),
               m_on / m_off,
               runs="on %s off %s" % (run.spread(res["on"], "msgs_per_s"),
                                      run.spread(res["off"], "msgs_per_s")),
               command="--only s")
