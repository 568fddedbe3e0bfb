"""Fixtures of the mod_websocket integration tests.

`srv` is one httpd (event MPM) shared by most tests, with every location
the tests need; tests that need a config of their own make an Httpd with
the `make_httpd` fixture.  After each test, the error logs of all running
servers are checked for crashes and sanitizer reports.
"""

import os
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import Httpd, CRASH_RE  # noqa: E402

AUTH_USER = "wsuser"
AUTH_PASS = "s3cret-pass"
TRUSTED = ("http://good.example", "https://also.example:8443")

_servers = []


def pytest_collection_modifyitems(config, items):
    if harness.ASAN:
        skip = pytest.mark.skip(reason="noasan: not under WS_ASAN=1")
        for item in items:
            if "noasan" in item.keywords:
                item.add_marker(skip)


def require_build():
    missing = [p for p in (harness.module_so(), harness.plugin_so("echo"),
                           harness.plugin_so("dumb_increment"),
                           harness.test_plugin_so("probe"))
               if not os.path.exists(p)]
    if missing:
        pytest.fail("not built (run make%s): %s" % (
            " asan" if harness.ASAN else "", ", ".join(missing)),
            pytrace=False)


def ws_location(path, so, init, extra=""):
    return ("<Location %s>\n    SetHandler websocket-handler\n"
            '    WebSocketHandler "%s" %s\n%s</Location>\n'
            % (path, so, init, extra))


def shared_conf(h):
    probe = harness.test_plugin_so("probe")
    # A copy under ServerRoot, named by a relative path.
    os.makedirs(os.path.join(h.root, "modules"), exist_ok=True)
    shutil.copy(h.echo_so, os.path.join(h.root, "modules",
                                        "mod_websocket_echo.so"))
    pwfile = os.path.join(h.root, "htpasswd")
    subprocess.run(["htpasswd", "-bc", pwfile, AUTH_USER, AUTH_PASS],
                   check=True, capture_output=True)
    os.chmod(pwfile, 0o644)
    with open(os.path.join(h.docroot, "index.html"), "w") as f:
        f.write("<html>static</html>\n")
    os.chmod(os.path.join(h.docroot, "index.html"), 0o644)
    conf = [
        ws_location("/echo", h.echo_so, "echo_init"),
        ws_location("/dumb-increment", h.dumb_so, "dumb_increment_init"),
        ws_location("/minimal", harness.test_plugin_so("minimal"),
                    "minimal_init"),
        "<Location /relecho>\n    SetHandler websocket-handler\n"
        "    WebSocketHandler modules/mod_websocket_echo.so echo_init\n"
        "</Location>\n",
        ws_location("/probe", probe, "probe_init"),
        # These inherit the handler of /probe (merged per-dir config).
        "<Location /probe/small>\n    WebSocketMaxMessageSize 1000\n"
        "</Location>\n",
        "<Location /probe/small/deeper>\n    WebSocketOriginCheck Off\n"
        "</Location>\n",
        "<Location /probe/onek>\n    WebSocketMaxMessageSize 1K\n"
        "</Location>\n",
        "<Location /probe/trusted>\n    WebSocketOriginCheck Trusted\n"
        "    WebSocketTrustedOrigin %s\n</Location>\n" % " ".join(TRUSTED),
        "<Location /probe/anyorigin>\n    WebSocketOriginCheck Off\n"
        "</Location>\n",
        "<Location /probe/reserved>\n"
        "    WebSocketAllowReservedStatusCodes On\n</Location>\n",
        "<Location /probe/queue>\n    WebSocketSendQueueLimit 1048576\n"
        "</Location>\n",
        "<Location /probe/closetimeout>\n    WebSocketCloseTimeout 700ms\n"
        "</Location>\n",
        "<Location /probe/denied>\n    Require all denied\n</Location>\n",
        "<Location /probe/auth>\n    AuthType Basic\n    AuthName wstest\n"
        "    AuthBasicProvider file\n    AuthUserFile \"%s\"\n"
        "    Require valid-user\n</Location>\n" % pwfile,
    ]
    return "".join(conf)


def _check_servers(when):
    problems = []
    for h in _servers:
        if h.proc is None:
            continue
        text = h.since(h._crash_mark, "error")
        h._crash_mark = h.mark()
        crash = [l for l in text.splitlines() if CRASH_RE.search(l)]
        if crash:
            problems.append("%s: crash in %s:\n%s" % (
                when, h.conf_path, "\n".join(crash)))
        rep = h.check_sanitizers(raise_=False)
        if rep:
            problems.append("%s: sanitizer report:\n%s" % (when, rep))
        bugs = [l for l in h.since(h._bug_mark, "test").splitlines()
                if l.startswith("BUG")]
        h._bug_mark = h.mark()
        if bugs:
            problems.append("%s: probe saw API misuse:\n%s"
                            % (when, "\n".join(bugs)))
    return problems


def register(h):
    h._crash_mark = h.mark()
    h._bug_mark = h.mark()
    _servers.append(h)


@pytest.fixture(autouse=True)
def crash_check(request):
    yield
    problems = _check_servers(request.node.nodeid)
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def serve(conf_fn, **kw):
    """For module- and session-scoped fixtures: yields a started Httpd
    whose extra config is conf_fn(h), checked after every test while it
    runs, stopped and removed at the end."""
    require_build()
    h = Httpd(**kw)
    h.write_conf(conf_fn(h))
    try:
        h.start()
        register(h)
        yield h
        _servers.remove(h)
        h.stop()
    finally:
        h.cleanup()


@pytest.fixture(scope="session")
def srv():
    yield from serve(shared_conf)


@pytest.fixture
def make_httpd():
    """make_httpd(conf_fn, **kw): an Httpd whose extra config is
    conf_fn(h) (a function, so it can use h's paths and port), not yet
    started; stopped and checked at the end of the test."""
    require_build()
    made = []

    def make(conf_fn=None, **kw):
        h = Httpd(**kw)
        if conf_fn is not None:
            h.write_conf(conf_fn(h))
        made.append(h)
        register(h)
        return h

    yield make
    errors = []
    for h in made:
        if h in _servers:
            _servers.remove(h)
        try:
            h.stop()
        except Exception as e:  # noqa: BLE001
            errors.append(str(e))
        finally:
            h.cleanup()
    if errors:
        pytest.fail("\n".join(errors), pytrace=False)
