"""bench/run.py scenario r: topics across nodes through Redis
(WebSocketRedis), against local-only delivery measured in the same run.

Three httpds and one redis-server of our own on loopback: nodes A and B
relay through Redis; node L has no WebSocketRedis (the reference).
Publisher: a v2probe connection sending "pub:<topic>:<text>" commands;
subscriber: a v2probe connection subscribed to the topic (sub:).

  r.lat   one message at a time (the next after the last arrived): the
          time from the publisher's send on A to the arrival at a
          subscriber on B, p50 and p99; reference: the same with
          publisher and subscriber on L (the ring only).  Also the
          subscriber on A itself (Redis on, local delivery) as INFO.
  r.rate  publishes per second: N messages sent back to back on A, until
          the last arrives on B; reference: the same on L.

Everything runs on the same 2 cores: Redis, 3 httpds and the Python
clients.
"""

import os
import statistics
import subprocess
import sys
import time

T_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), "t")
sys.path.insert(0, T_DIR)

from wsraw import WSClient  # noqa: E402
from redisd import Redis  # noqa: E402

import harness  # noqa: E402

LAT_MESSAGES = 1000
RATE_MESSAGES = 20000


def node_extra(redis_url):
    v2 = harness.test_plugin_so("v2probe")
    return """\
{redis}
WebSocketSendQueueLimit 64M
<Location /v2>
    SetHandler websocket-handler
    WebSocketHandler "{v2}" v2probe_init
    WebSocketOriginCheck Off
</Location>
""".format(redis="WebSocketRedis %s\nWebSocketRedisPrefix bench:"
           % redis_url if redis_url else "", v2=v2)


def subscribe(node, topic):
    ws = WSClient(node.port, "/v2", timeout=30)
    ws.send_text("sub:%s" % topic)
    return ws


def wait_subscribed(redis, channel, n, timeout=15):
    end = time.monotonic() + timeout
    while int(redis.cmd("PUBSUB", "NUMSUB", channel)[1]) != n:
        if time.monotonic() > end:
            raise RuntimeError("%s never got %d subscribers" % (channel, n))
        time.sleep(0.02)


def settle(pub, subs, topic):
    """Publishes until every subscriber got one (subscriptions are live)."""
    for i in range(200):
        pub.send_text("pub:%s:warm%d" % (topic, i))
        try:
            for s in subs:
                s.settimeout(0.2)
                while s.recv_text() != "warm%d" % i:
                    pass
            for s in subs:
                s.settimeout(30)
            return
        except OSError:
            continue
    raise RuntimeError("subscribers never got a message")


def latencies(pub, subs, topic, n, timed):
    """Send-to-arrival times (us) at subs[timed]; the other subscribers
    are read after it, untimed."""
    out = []
    order = [subs[timed]] + [s for k, s in enumerate(subs) if k != timed]
    for i in range(n):
        text = "m%d.%d" % (timed, i)
        t0 = time.perf_counter()
        pub.send_text("pub:%s:%s" % (topic, text))
        for k, s in enumerate(order):
            while s.recv_text() != text:
                pass
            if k == 0:
                out.append((time.perf_counter() - t0) * 1e6)
    return out


def rate(pub, sub, topic, n):
    """n publishes back to back; the subscriber's socket is read in bulk
    (no frame parsing in Python) until the last one shows."""
    frames = b"".join(_frame("pub:%s:r%d" % (topic, i)) for i in range(n))
    last = ("r%d" % (n - 1)).encode()
    tail = sub.buf
    t0 = time.perf_counter()
    pub.send_raw(frames)
    while not tail.endswith(last):
        chunk = sub.sock.recv(1 << 20)
        if not chunk:
            raise RuntimeError("subscriber closed")
        tail = (tail + chunk)[-64:]
    return n / (time.perf_counter() - t0)


def _frame(text):
    from wsraw import build_frame, OP_TEXT
    return build_frame(OP_TEXT, text.encode())


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100.0))]


def scenario_r(args, work, run):
    """run: bench/run.py's module (Httpd, figure, log, spread)."""
    redis = Redis().start()
    nodes = []
    try:
        for name, url in (("A", redis.url()), ("B", redis.url()),
                          ("L", None)):
            h = run.Httpd(work, "redis-" + name, extra=node_extra(url))
            nodes.append(h.start())
        a, b, l = nodes
        res = {"cross": [], "local_a": [], "ref": [], "rate": [],
               "rate_ref": []}
        for i in range(args.runs):
            run.log("r: run %d/%d" % (i + 1, args.runs))
            topic = "bench%d" % i
            pub_a = WSClient(a.port, "/v2", timeout=30)
            sub_b, sub_a = subscribe(b, topic), subscribe(a, topic)
            wait_subscribed(redis, "bench:" + topic, 2)
            settle(pub_a, (sub_b, sub_a), topic)
            res["cross"].append(latencies(pub_a, (sub_b, sub_a), topic,
                                          LAT_MESSAGES, 0))
            res["local_a"].append(latencies(pub_a, (sub_b, sub_a), topic,
                                            LAT_MESSAGES, 1))
            pub_l, sub_l = WSClient(l.port, "/v2", timeout=30), \
                subscribe(l, topic)
            settle(pub_l, (sub_l,), topic)
            res["ref"].append(latencies(pub_l, (sub_l,), topic,
                                        LAT_MESSAGES, 0))
            sub_a.abort()            # only B's subscriber now
            res["rate"].append(rate(pub_a, sub_b, topic, RATE_MESSAGES))
            res["rate_ref"].append(rate(pub_l, sub_l, topic, RATE_MESSAGES))
            for ws in (pub_a, sub_b, sub_a, pub_l, sub_l):
                ws.abort()
        report(run, res)
    finally:
        for h in nodes:
            h.stop()
        redis.cleanup()


def report(run, res):
    for p in (50, 99):
        cross = [pct(r, p) for r in res["cross"]]
        ref = [pct(r, p) for r in res["ref"]]
        loc = [pct(r, p) for r in res["local_a"]]
        v, rv = statistics.median(cross), statistics.median(ref)
        run.figure("r.lat.p%d" % p, "publish on node A -> subscriber on "
                   "node B through Redis, p%d" % p, "%.0f us" % v,
                   "local only %.0f us" % rv, v / rv, runs="cross %s ref %s"
                   % (_list(cross), _list(ref)), command="--only r")
        lv = statistics.median(loc)
        run.figure("r.lat.local.p%d" % p, "same publish, subscriber on node "
                   "A itself (Redis on), p%d" % p, "%.0f us" % lv,
                   "local only %.0f us" % rv, lv / rv, runs=_list(loc),
                   command="--only r")
    v, rv = statistics.median(res["rate"]), statistics.median(res["rate_ref"])
    run.figure("r.rate", "publishes/s from node A delivered on node B "
               "through Redis (%d back to back)" % RATE_MESSAGES,
               "%.1fk" % (v / 1e3), "local only %.1fk" % (rv / 1e3), v / rv,
               runs="redis %s ref %s" % (_list(res["rate"], 1e3),
                                         _list(res["rate_ref"], 1e3)),
               command="--only r")


def _list(values, scale=1.0):
    return "[" + " ".join("%.0f" % (v / scale) for v in values) + "]"


if __name__ == "__main__":
    subprocess.run([sys.executable, os.path.join(os.path.dirname(
        os.path.abspath(__file__)), "run.py"), "--only", "r"] + sys.argv[1:])
