"""The directives have one source, docs/directives.def: the generated
files (ws_directives.h, docs/directives.html, the README's entries) are
current, the built module's command table (apache2 -L) is exactly the
documented one with the documented help and contexts, and each example is
accepted where the reference says it is allowed and refused elsewhere."""

import os
import re
import subprocess
import sys

import pytest

import harness
from conftest import require_build

REPO = harness.REPO
sys.path.insert(0, os.path.join(REPO, "docs"))
import gen_directives  # noqa: E402

MODULE, DIRECTIVES = gen_directives.load(REPO)
ALLOWED_ANYWHERE = "Allowed in *.conf anywhere"
ALLOWED_OUTSIDE = ("Allowed in *.conf only outside <Directory>, <Files>, "
                   "<Location>, or <If>")


def entries():
    """(name, directive) for every name in the table, aliases included."""
    for d in DIRECTIVES:
        yield d["Name"], d
        for alias in d["aliases"]:
            yield alias, d


def test_generated_files_are_current(tmp_path):
    subprocess.run(["/usr/bin/python3", os.path.join(REPO, "docs",
                                                     "gen_directives.py"),
                    "--out", str(tmp_path)], check=True)
    stale = []
    for rel in (gen_directives.OUT_HEADER, gen_directives.OUT_HTML,
                gen_directives.OUT_README):
        with open(os.path.join(REPO, rel)) as f:
            committed = f.read()
        with open(os.path.join(tmp_path, rel)) as f:
            if f.read() != committed:
                stale.append(rel)
    assert not stale, ("%s stale: run make docs after editing "
                       "docs/directives.def" % ", ".join(stale))


def show_directives():
    """{name: (help, where)} of mod_websocket.c's entries in apache2 -L."""
    require_build()
    h = harness.Httpd()
    try:
        p = subprocess.run([harness.APACHE, "-f", h.conf_path, "-L"],
                           capture_output=True, text=True, env=h.env(),
                           timeout=60)
    finally:
        h.cleanup()
    assert p.returncode == 0, p.stdout + p.stderr
    table, name = {}, None
    for line in p.stdout.splitlines():
        m = re.match(r"^(\S+) \((.+)\)$", line)
        if m:
            name = m.group(1) if m.group(2) == "mod_websocket.c" else None
            if name:
                table[name] = []
        elif name and line.startswith("\t"):
            table[name].append(line[1:])
    return {n: (lines[0], "\n".join(lines[1:])) for n, lines in table.items()}


def expected_where(d):
    if ".htaccess" in d["contexts"]:
        return "%s and in .htaccess\nwhen AllowOverride includes %s" % (
            ALLOWED_ANYWHERE, d["Override"])
    if "directory" in d["contexts"]:
        return ALLOWED_ANYWHERE
    return ALLOWED_OUTSIDE


def test_command_table_is_the_documented_one():
    table = show_directives()
    documented = dict(entries())
    assert sorted(table) == sorted(documented), (
        "in the module only: %s; documented only: %s" % (
            sorted(set(table) - set(documented)),
            sorted(set(documented) - set(table))))
    for name, d in documented.items():
        help_, where = table[name]
        want = (gen_directives.help_text(d) if name == d["Name"]
                else gen_directives.alias_help(d))
        assert help_ == want, name
        assert where == expected_where(d), name


def test_every_directive_has_the_manual_fields():
    html = open(os.path.join(REPO, gen_directives.OUT_HTML)).read()
    for name, d in entries():
        section = html.split('<h2 id="%s">' % name.lower())[1]
        section = section.split("</div>\n<div class=\"directive-section\"")[0]
        for row in ("Description", "Syntax", "Context", "Module",
                    "Compatibility"):
            assert "<th>%s:</th>" % row in section, (name, row)
        if d.get("Default"):
            assert "<th>Default:</th>" in section, name
        if name == d["Name"]:
            assert "<h3>Example</h3>" in section, name
    readme = open(os.path.join(REPO, "README")).read()
    generated = readme.split(gen_directives.README_BEGIN)[1].split(
        gen_directives.README_END)[0]
    for name, d in entries():
        assert re.search(r"\b%s\b" % name, generated), name


# ---- where each directive is allowed -----------------------------------------

CONTEXT_WRAPPERS = {
    "server config": "%s\n",
    "virtual host": "<VirtualHost 127.0.0.1:*>\n%s\n</VirtualHost>\n",
    "directory": "<Location /ws>\n%s\n</Location>\n",
}


def example_of(name, d, h):
    """The directive's documented example, runnable here: under its own
    name (for an alias), with the build's echo plugin as handler."""
    lines = []
    for line in d["Example"].splitlines():
        words = line.split()
        if words and words[0] == d["Name"]:
            words[0] = name
        if words and words[0] == "WebSocketHandler":
            words[1:] = ['"%s"' % h.echo_so, "echo_init"]
        lines.append(" ".join(words))
    return "\n".join(lines)


def configtest(make_httpd, context, examples):
    h = make_httpd()
    h.write_conf(CONTEXT_WRAPPERS[context] % "\n".join(
        example_of(n, d, h) for n, d in examples))
    return h.configtest()


@pytest.mark.parametrize("context", sorted(CONTEXT_WRAPPERS))
def test_examples_accepted_where_documented(make_httpd, context):
    allowed = [(n, d) for n, d in entries() if context in d["contexts"]]
    assert allowed
    rc, out = configtest(make_httpd, context, allowed)
    assert rc == 0, out


def test_examples_refused_where_not_documented(make_httpd):
    refused = [(n, d, c) for n, d in entries() for c in CONTEXT_WRAPPERS
               if c not in d["contexts"]]
    for name, d, context in refused:
        rc, out = configtest(make_httpd, context, [(name, d)])
        assert rc != 0, "%s accepted in %s:\n%s" % (name, context, out)
        assert name in out, out


def test_sample_configuration_shows_the_defaults():
    """mod_websocket.conf's commented defaults are the documented ones."""
    defaults = {d["Name"]: d.get("Default") for d in DIRECTIVES}
    shown = 0
    with open(os.path.join(REPO, "mod_websocket.conf")) as f:
        for line in f:
            m = re.match(r"^    # (WebSocket\w+) (\S+)\s", line)
            if m:
                assert m.group(1) in defaults, line
                assert m.group(2) == defaults[m.group(1)], line
                shown += 1
    assert shown >= 3


def test_docs_name_no_unknown_directive():
    """A WebSocket* word in the docs is a directive, an API name, or a key
    of server-status?auto (ws_stats.c)."""
    api = set(re.findall(r"\bWebSocket\w+",
                         open(os.path.join(REPO, "websocket_plugin.h")).read()))
    status = set(re.findall(r'LINE\("(WebSocket\w+)"',
                            open(os.path.join(REPO, "ws_stats.c")).read()))
    assert "WebSocketConnections" in status
    known = {n for n, _ in entries()} | api | status
    paths = ["README", "mod_websocket.conf"] + [
        os.path.join("docs", f) for f in os.listdir(os.path.join(REPO, "docs"))
        if f.endswith(".md")]
    for rel in paths:
        with open(os.path.join(REPO, rel)) as f:
            words = set(re.findall(r"\bWebSocket[A-Z]\w+", f.read()))
        unknown = words - known
        assert not unknown, "%s names %s" % (rel, sorted(unknown))
