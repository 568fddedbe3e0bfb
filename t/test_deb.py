"""make deb: the Debian packages hold what they should, lintian finds no
error, and the files of the packages, extracted without installing
anything, make a working server: the module from websocket.load, the
sample websocket.conf, the example echo plugin, and a plugin built with
apxs against the -dev package's header.

The packages `make test` built earlier are used when they are newer than
every file they are made of; otherwise this runs `make deb` itself."""

import asyncio
import glob
import os
import re
import shutil
import subprocess

import pytest

import harness

websockets = pytest.importorskip("websockets")

# The package holds the normal build: nothing to learn under ASan.
pytestmark = pytest.mark.noasan

REPO = harness.REPO
DEB_DIR = os.path.join(REPO, "build", "deb")
MAIN = "libapache2-mod-websocket"
DEV = "libapache2-mod-websocket-dev"
MODDIR = "/usr/lib/apache2/modules"
PLUGINDIR = "/usr/lib/apache2/websocket"
DOCDIR = "/usr/share/doc/" + MAIN


def ws_version():
    with open(os.path.join(REPO, "ws_version.h")) as f:
        return re.search(r'#define WS_VERSION "([^"]+)"', f.read()).group(1)


def example_plugins():
    return sorted(os.path.basename(p)[:-2]
                  for p in glob.glob(os.path.join(REPO, "plugins", "*.c")))


def package_inputs():
    """The files the packages are made of."""
    patterns = ["Makefile", "*.c", "*.h", "mod_websocket.conf", "README",
                "plugins/*.c", "plugins/*/*", "docs/*", "debian/*",
                "debian/source/*"]
    for pattern in patterns:
        for path in glob.glob(os.path.join(REPO, pattern)):
            if os.path.isfile(path):
                yield path


def deb_paths():
    arch = subprocess.check_output(["dpkg", "--print-architecture"],
                                   text=True).strip()
    version = ws_version()
    return {MAIN: os.path.join(DEB_DIR, "%s_%s_%s.deb" % (MAIN, version, arch)),
            DEV: os.path.join(DEB_DIR, "%s_%s_all.deb" % (DEV, version))}


@pytest.fixture(scope="module")
def debs():
    paths = deb_paths()
    newest_input = max(os.path.getmtime(p) for p in package_inputs())
    if not all(os.path.exists(p) and os.path.getmtime(p) > newest_input
               for p in paths.values()):
        p = subprocess.run(["make", "-s", "deb"], cwd=REPO,
                           capture_output=True, text=True, timeout=900)
        assert p.returncode == 0, (p.stdout + p.stderr)[-5000:]
    for path in paths.values():
        assert os.path.exists(path), "make deb made no %s" % path
    return paths


def contents(deb):
    """{path: mode string} of a package's files (dpkg-deb -c)."""
    out = subprocess.check_output(["dpkg-deb", "-c", deb], text=True)
    files = {}
    for line in out.splitlines():
        fields = line.split(None, 5)
        files[fields[5].lstrip(".").split(" -> ")[0]] = fields[0]
    return files


def field(deb, name):
    return subprocess.check_output(["dpkg-deb", "-f", deb, name],
                                   text=True).strip()


def test_version_is_the_module_version(debs):
    changelog = subprocess.check_output(
        ["dpkg-parsechangelog", "-l", os.path.join(REPO, "debian/changelog"),
         "-SVersion"], text=True).strip()
    assert changelog == ws_version()
    for deb in debs.values():
        assert field(deb, "Version") == ws_version()


def test_main_package_contents(debs):
    files = contents(debs[MAIN])
    wanted = [MODDIR + "/mod_websocket.so",
              "/etc/apache2/mods-available/websocket.load",
              "/etc/apache2/mods-available/websocket.conf",
              DOCDIR + "/directives.html", DOCDIR + "/README.Debian",
              DOCDIR + "/copyright"]
    wanted += ["%s/mod_websocket_%s.so" % (PLUGINDIR, p)
               for p in example_plugins()]
    missing = [w for w in wanted if w not in files]
    assert not missing, missing
    assert DOCDIR + "/README.gz" in files or DOCDIR + "/README" in files, \
        sorted(files)
    # Nothing else under modules/: a2enmod and lintian take every
    # shared object there for an Apache module.
    assert [f for f in files if f.startswith(MODDIR + "/")
            and not f.endswith("/")] == [MODDIR + "/mod_websocket.so"]
    for f, mode in files.items():
        if f.endswith(".so"):
            assert mode == "-rw-r--r--", (f, mode)
    depends = field(debs[MAIN], "Depends")
    assert re.search(r"\bapache2-api-\d+", depends), depends


def test_installing_does_not_enable_the_module(debs, tmp_path):
    """No postinst (dh_apache2 --noenable): the admin runs a2enmod; the
    prerm disables the module on removal."""
    control = tmp_path / "control"
    subprocess.run(["dpkg-deb", "-e", debs[MAIN], str(control)], check=True)
    assert not (control / "postinst").exists() or \
        "enmod" not in (control / "postinst").read_text()
    prerm = (control / "prerm").read_text()
    assert "apache2-maintscript-helper" in prerm
    assert re.search(r"apache2_invoke dismod \$conf", prerm), prerm
    assert re.search(r"for conf in websocket\b", prerm), prerm
    conffiles = (control / "conffiles").read_text().split()
    assert "/etc/apache2/mods-available/websocket.load" in conffiles
    assert "/etc/apache2/mods-available/websocket.conf" in conffiles


def test_dev_package_contents(debs):
    files = contents(debs[DEV])
    assert "/usr/include/apache2/websocket_plugin.h" in files
    examples = "/usr/share/doc/%s/examples/" % DEV
    for p in example_plugins():
        assert examples + p + ".c" in files, sorted(files)
    assert "/usr/share/doc/%s/README.Debian" % DEV in files
    assert field(debs[DEV], "Architecture") == "all"


def test_lintian_reports_no_error(debs):
    p = subprocess.run(["lintian", "--fail-on", "error"] + list(debs.values()),
                       capture_output=True, text=True, timeout=600)
    errors = [l for l in p.stdout.splitlines() if l.startswith("E:")]
    assert p.returncode == 0 and not errors, p.stdout + p.stderr


# ---- a server made of the extracted files ------------------------------------

def extract(debs, root):
    for deb in debs.values():
        subprocess.run(["dpkg-deb", "-x", deb, root], check=True)
    os.chmod(root, 0o755)


def build_plugin_with_dev_header(root, workdir):
    """The -dev package's example echo.c, built with apxs against the
    extracted header only (the source tree is not on the include path)."""
    include = os.path.join(root, "usr/include/apache2")
    os.makedirs(workdir)
    src = os.path.join(workdir, "echo.c")
    shutil.copy(os.path.join(root, "usr/share/doc", DEV, "examples",
                             "echo.c"), src)
    # -iquote: found before apxs's own -I/usr/include/apache2, where a
    # header of an installed package could be.
    p = subprocess.run(["apxs", "-c", "-Wc,-iquote%s" % include,
                        "-o", "mod_websocket_echo.la", src], cwd=workdir,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "-I%s" % REPO not in p.stdout
    return os.path.join(workdir, ".libs", "mod_websocket_echo.so")


def relocated(text, root):
    """A configuration file of the package, its paths into root."""
    for path in (MODDIR, PLUGINDIR):
        text = text.replace(path + "/", root + path + "/")
    return text


def packaged_conf(root, dev_echo):
    avail = os.path.join(root, "etc/apache2/mods-available")
    conf_path = os.path.join(avail, "websocket.conf")
    with open(conf_path) as f:
        sample = f.read()
    with open(conf_path, "w") as f:
        f.write(relocated(sample, root))
    with open(os.path.join(avail, "websocket.load")) as f:
        load = relocated(f.read(), root)
    # Exactly what a2enmod enables: the .load, then the .conf.
    return (load + "LogLevel warn websocket:info\n"
            'Include "%s"\n' % conf_path
            + "<Location /echo>\n    SetHandler websocket-handler\n"
            "    WebSocketHandler %s/mod_websocket_echo.so echo_init\n"
            "</Location>\n" % (root + PLUGINDIR)
            + "<Location /dev-echo>\n    SetHandler websocket-handler\n"
            '    WebSocketHandler "%s" echo_init\n</Location>\n' % dev_echo)


def echo_round_trip(port, path):
    async def main():
        async with websockets.connect("ws://127.0.0.1:%d%s" % (port, path),
                                      compression="deflate") as ws:
            await ws.send("hello from the package \u00e9")
            assert await ws.recv() == "hello from the package \u00e9"
            await ws.send(b"\x00\x01" * 5000)
            assert await ws.recv() == b"\x00\x01" * 5000
        assert ws.close_code == 1000
    asyncio.run(asyncio.wait_for(main(), 30))


def test_extracted_package_serves_echo(debs, tmp_path):
    root = str(tmp_path / "root")
    extract(debs, root)
    load = open(os.path.join(root, "etc/apache2/mods-available/"
                             "websocket.load")).read()
    assert load.strip() == ("LoadModule websocket_module %s/mod_websocket.so"
                            % MODDIR)
    dev_echo = build_plugin_with_dev_header(root, str(tmp_path / "plugin"))
    h = harness.Httpd(load_module=False)
    try:
        h.write_conf(packaged_conf(root, dev_echo))
        assert root + MODDIR + "/mod_websocket.so" in open(h.conf_path).read()
        h.start()
        echo_round_trip(h.port, "/echo")
        echo_round_trip(h.port, "/dev-echo")
        started = "mod_websocket %s (" % ws_version()
        text = h.wait_log(lambda t: started in t)
        assert started in text, text[-3000:]
        h.stop()
    finally:
        h.cleanup()
