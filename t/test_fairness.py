"""One client must not stall the others: while two clients stream large,
highly compressible messages with permessage-deflate (echoed back), an
innocent client's small echoes on the same event loop keep coming.  Before,
the loop inflated and compressed every such message whole: an innocent
echo took up to 2.1 s.  (The figure for the record is bench/fairness.py's;
this test only guards against the stall coming back, with a loose bound.)"""

import asyncio
import multiprocessing
import time

import pytest

import harness
from conftest import ws_location
from wsraw import wait_until

websockets = pytest.importorskip("websockets")

ONE_LOOP = harness.ONE_CHILD

def words(size, seed=7):
    """Text that compresses about 2.4:1, like real JSON or logs: zlib takes
    ~130 ms to deflate 8 MiB of it, so a loop that does it inline stalls."""
    import random
    rnd = random.Random(seed)
    vocab = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "theta",
             "kappa", "lambda", "sigma", "omega", "rho", "tau", "phi"]
    out = " ".join(rnd.choice(vocab) + str(rnd.randint(0, 999))
                   for _ in range(size // 6))
    return out[:size]


MESSAGE = words(8 << 20)


def abuser(url, seconds, echoed):
    """In a process of its own, so that the client's own compressing does
    not delay the innocent client's measurements."""
    async def main():
        async with websockets.connect(url, compression="deflate",
                                      max_size=None) as ws:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                await ws.send(MESSAGE)
                assert await ws.recv() == MESSAGE
                with echoed.get_lock():
                    echoed.value += 1
    asyncio.run(main())


async def innocent(url, seconds):
    out = []
    async with websockets.connect(url, compression=None) as ws:
        end = time.monotonic() + seconds
        i = 0
        while time.monotonic() < end:
            t = time.monotonic()
            await ws.send("ping %d" % i)
            assert await ws.recv() == "ping %d" % i
            out.append(time.monotonic() - t)
            i += 1
            await asyncio.sleep(0.005)
    return out


def test_innocent_echo_while_others_stream_compressed(make_httpd):
    h = make_httpd(lambda h: "WebSocketEventThreads 1\n"
                   + ws_location("/echo", h.echo_so, "echo_init"),
                   mpm_conf=ONE_LOOP)
    h.start()
    url = "ws://127.0.0.1:%d/echo" % h.port

    echoed = multiprocessing.Value("i", 0)
    procs = [multiprocessing.Process(target=abuser, args=(url, 5.0, echoed))
             for _ in range(2)]
    for p in procs:
        p.start()
    try:
        # Once the streams are under way, measure.
        assert wait_until(lambda: echoed.value >= 2, timeout=30)
        lat = asyncio.run(asyncio.wait_for(innocent(url, 2.0), 60))
    finally:
        for p in procs:
            p.join(30)
    echoed = echoed.value
    assert echoed >= 4, "the abusers' messages hardly went through"
    worst = max(lat)
    # Under ASan the loop's bounded slices run 2-3 times slower (a worst
    # case of 104 ms was seen on a loaded machine); the stall this guards
    # against took 2.1 s, and the plain build keeps the tight bound.
    bound = 0.25 if harness.ASAN else 0.1
    assert worst < bound, "an innocent 32-byte echo took %.3f s (p50 %.4f)" % (
        worst, sorted(lat)[len(lat) // 2])
