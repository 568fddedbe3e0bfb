#!/usr/bin/python3
"""Generates mod_websocket's directive table, reference and README entries
from docs/directives.def (the format is described at the top of that file).

    /usr/bin/python3 docs/gen_directives.py            # rewrite in place
    /usr/bin/python3 docs/gen_directives.py --out DIR  # write into DIR
    /usr/bin/python3 docs/gen_directives.py --check    # exit 1 when stale

Outputs, relative to the repository (or DIR): ws_directives.h,
docs/directives.html, README (only the part between the marker lines
changes; with --out, DIR/README is the whole README with that part new).
"""

import argparse
import html
import os
import re
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = "docs/directives.def"
VERSION_HEADER = "ws_version.h"
OUT_HEADER = "ws_directives.h"
OUT_HTML = "docs/directives.html"
OUT_README = "README"
README_BEGIN = ".. begin directives (generated from docs/directives.def: make docs)"
README_END = ".. end directives"

ARG_KINDS = ("NO_ARGS", "RAW_ARGS", "TAKE_ARGV", "FLAG", "TAKE1", "TAKE2",
             "TAKE3", "TAKE12", "TAKE13", "TAKE23", "TAKE123", "ITERATE",
             "ITERATE2")
CONTEXTS = ("server config", "virtual host", "directory", ".htaccess")
OVERRIDES = {"FileInfo": "OR_FILEINFO", "AuthConfig": "OR_AUTHCFG",
             "Indexes": "OR_INDEXES", "Limit": "OR_LIMIT",
             "Options": "OR_OPTIONS"}
MODULE_FIELDS = {"Name", "Identifier", "Source", "Status", "Description",
                 "Compatibility", "Summary", "Example"}
DIRECTIVE_FIELDS = {"Args", "Setter", "Data", "Syntax", "Default", "Context",
                    "Override", "Description", "Since", "Compatibility",
                    "Alias", "Explanation", "Example"}
REQUIRED = ("Args", "Setter", "Syntax", "Context", "Description", "Since",
            "Explanation", "Example")
MULTI = {"Alias"}


class DefError(Exception):
    pass


# ---- reading the source -----------------------------------------------------

def parse_blocks(text):
    """[(kind, name, {field: value or [values]}, line)] of the file."""
    blocks = []
    block = field = None
    lines = []

    def end_field():
        if field is None:
            return
        value = textwrap.dedent("\n".join(lines)).strip("\n")
        fields = block[2]
        if field in MULTI:
            fields.setdefault(field, []).append(value)
        elif field in fields:
            raise DefError("line %d: %s given twice" % (block[3], field))
        else:
            fields[field] = value

    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("#"):
            continue
        if line.startswith("%"):
            end_field()
            field = None
            words = line[1:].split()
            if not words or words[0] not in ("module", "directive"):
                raise DefError("line %d: unknown block %r" % (n, line))
            block = (words[0], " ".join(words[1:]), {}, n)
            blocks.append(block)
            continue
        if not line.strip() or line[0] in " \t":
            if field is None and line.strip():
                raise DefError("line %d: continuation of no field" % n)
            lines.append(line)
            continue
        m = re.match(r"([A-Za-z]+):\s?(.*)$", line)
        if not m or block is None:
            raise DefError("line %d: expected 'Field: value'" % n)
        end_field()
        field, lines = m.group(1), [m.group(2)]
        # The first line's text counts as indented like the rest.
        if m.group(2):
            lines[0] = "    " + m.group(2)
    end_field()
    return blocks


def read_version(repo):
    text = open(os.path.join(repo, VERSION_HEADER)).read()
    m = re.search(r'#define\s+WS_VERSION\s+"([0-9][0-9.]*)"', text)
    if not m:
        raise DefError("%s defines no WS_VERSION" % VERSION_HEADER)
    return m.group(1)


def version_tuple(v):
    return tuple(int(x) for x in v.split("."))


def one_line(value):
    return " ".join(value.split())


def parse_contexts(d):
    contexts = [c.strip() for c in d["Context"].split(",")]
    for c in contexts:
        if c not in CONTEXTS:
            raise DefError("%s: unknown context %r (known: %s)"
                           % (d["Name"], c, ", ".join(CONTEXTS)))
    if "server config" not in contexts:
        raise DefError("%s: every directive is allowed in server config"
                       % d["Name"])
    if ".htaccess" in contexts and d.get("Override") not in OVERRIDES:
        raise DefError("%s: .htaccess needs Override: one of %s"
                       % (d["Name"], ", ".join(OVERRIDES)))
    if d.get("Override") and ".htaccess" not in contexts:
        raise DefError("%s: Override without .htaccess" % d["Name"])
    if "directory" in contexts and "virtual host" not in contexts:
        raise DefError("%s: directory implies virtual host" % d["Name"])
    return contexts


def context_bits(d):
    """The req_override of the command_rec."""
    bits = ["RSRC_CONF"]
    if "directory" in d["contexts"]:
        bits.append("ACCESS_CONF")
    if ".htaccess" in d["contexts"]:
        bits.append(OVERRIDES[d["Override"]])
    return " | ".join(bits)


def load(repo):
    """(module, [directive]) with every field checked."""
    version = read_version(repo)
    blocks = parse_blocks(open(os.path.join(repo, SOURCE)).read())
    modules = [b for b in blocks if b[0] == "module"]
    if len(modules) != 1:
        raise DefError("exactly one %module block is needed")
    module = modules[0][2]
    unknown = set(module) - MODULE_FIELDS
    if unknown:
        raise DefError("%%module: unknown fields %s" % sorted(unknown))
    module["Version"] = version
    directives, seen = [], set()
    for kind, name, fields, line in blocks:
        if kind != "directive":
            continue
        d = dict(fields, Name=name)
        where = "%s (line %d)" % (name or "?", line)
        if not re.match(r"^[A-Za-z]+$", name):
            raise DefError("%s: a directive needs a name of letters" % where)
        unknown = set(fields) - DIRECTIVE_FIELDS
        if unknown:
            raise DefError("%s: unknown fields %s" % (where, sorted(unknown)))
        missing = [f for f in REQUIRED if not fields.get(f)]
        if missing:
            raise DefError("%s: missing %s" % (where, ", ".join(missing)))
        if d["Args"] not in ARG_KINDS:
            raise DefError("%s: Args must be one of %s" % (where, ARG_KINDS))
        if not re.match(r"^[A-Za-z_]\w*$", d["Setter"]):
            raise DefError("%s: Setter must be a C function name" % where)
        if not d["Syntax"].startswith(name + " ") and d["Syntax"] != name:
            raise DefError("%s: Syntax must start with the name" % where)
        if version_tuple(d["Since"]) > version_tuple(version):
            raise DefError("%s: Since %s is after WS_VERSION %s"
                           % (where, d["Since"], version))
        d["contexts"] = parse_contexts(d)
        d["aliases"] = d.get("Alias", [])
        for n in [name] + d["aliases"]:
            if n.lower() in seen:
                raise DefError("%s: %s is defined twice" % (where, n))
            seen.add(n.lower())
        directives.append(d)
    if not directives:
        raise DefError("no %directive blocks")
    return module, directives


def help_text(d):
    """What `apache2 -L` shows for the directive."""
    text = one_line(d["Description"])
    if d.get("Default"):
        text += " (default %s)" % one_line(d["Default"])
    return text


def alias_help(d):
    return "Deprecated name of %s" % d["Name"]


def alias_note(d):
    return "".join("%s (apache-websocket's name) is accepted as a deprecated "
                   "alias, with a warning in the error log. " % a
                   for a in d["aliases"]).strip()


# ---- ws_directives.h --------------------------------------------------------

def c_string(text, indent):
    """A C string literal, split into pieces that fit in 79 columns."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    room = 79 - indent - 3
    pieces, line = [], ""
    for word in re.split(r"(?<= )", escaped):
        if line and len(line) + len(word) > room:
            pieces.append(line)
            line = ""
        line += word
    pieces.append(line)
    return ("\n" + " " * indent).join('"%s"' % p for p in pieces)


def c_entry(args, name, d, help_):
    indent = " " * 13
    return ("WS_DIRECTIVE(%s, \"%s\", %s, %s,\n%s%s,\n%s%s)\n"
            % (args, name, d["Setter"], one_line(d.get("Data") or "NULL"),
               indent, context_bits(d), indent, c_string(help_, 13)))


def render_header(module, directives):
    out = ["/*\n"
           " * ws_directives.h - the entries of mod_websocket's command table.\n"
           " *\n"
           " * Generated by docs/gen_directives.py from docs/directives.def: edit\n"
           " * that file and run `make docs`; do not edit this one.\n"
           " *\n"
           " * Not a header of its own: mod_websocket.c defines\n"
           " * WS_DIRECTIVE(args, name, setter, data, where, help) and includes\n"
           " * this file inside ws_directives[].\n"
           " */\n"]
    for d in directives:
        out.append(c_entry(d["Args"], d["Name"], d, help_text(d)))
        for alias in d["aliases"]:
            out.append(c_entry(d["Args"], alias, d, alias_help(d)))
    return "".join(out)


# ---- docs/directives.html ---------------------------------------------------

CSS = """
body { font-family: sans-serif; max-width: 52em; margin: 1em auto;
       padding: 0 1em; color: #222; line-height: 1.4; }
h1 { color: #369; border-bottom: 2px solid #369; }
h2 { color: #369; border-top: 1px solid #ccc; padding-top: .6em;
     margin-top: 2em; }
table.module, table.directive { border-collapse: collapse; width: 100%;
       margin: .5em 0 1em; background: #f4f7fb; border: 1px solid #c8d3e0; }
table.module th, table.directive th { text-align: left; white-space: nowrap;
       vertical-align: top; padding: .2em .8em; width: 9em; }
table.module td, table.directive td { padding: .2em .8em; }
pre.config { background: #f6f6f0; border: 1px solid #ddd; padding: .5em;
       overflow-x: auto; }
div.example h3 { font-size: 100%; margin: .8em 0 .2em; }
ul#toc { columns: 2; }
code, pre { font-family: monospace, monospace; font-size: 90%; }
"""


def anchor(name):
    return name.lower()


def all_names(directives):
    names = {}
    for d in directives:
        names[d["Name"]] = d["Name"]
        for a in d["aliases"]:
            names[a] = a
    return names


def inline(text, names, own=None):
    """Escaped HTML of a piece of prose: `code`, links to directives."""
    def link(m):
        word = m.group(0)
        if word not in names or word == own:
            return word
        return '<a href="#%s">%s</a>' % (anchor(word), word)

    out = []
    for i, part in enumerate(text.split("`")):
        part = html.escape(part, quote=False)
        part = re.sub(r"\b[A-Za-z]+\b", link, part)
        out.append("<code>%s</code>" % part if i % 2 else part)
    return "".join(out)


def paragraphs(text, names, own=None):
    paras = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
    return "".join("<p>%s</p>\n" % inline(p.strip(), names, own)
                   for p in paras)


def example_box(text):
    return ('<div class="example"><h3>Example</h3>\n<pre class="config">'
            "%s</pre></div>\n" % html.escape(text, quote=False))


def rows(pairs):
    return "".join("<tr><th>%s:</th><td>%s</td></tr>\n" % p for p in pairs)


def directive_table(module, name, syntax, d, description, names,
                    compatibility):
    pairs = [("Description", description),
             ("Syntax", "<code>%s</code>" % html.escape(syntax))]
    if d.get("Default"):
        pairs.append(("Default", "<code>%s %s</code>" % (
            name, html.escape(one_line(d["Default"])))))
    pairs += [("Context", ", ".join(d["contexts"]))]
    if d.get("Override"):
        pairs.append(("Override", d["Override"]))
    pairs += [("Status", module["Status"]),
              ("Module", module["Name"]),
              ("Compatibility", compatibility)]
    return '<table class="directive">\n%s</table>\n' % rows(pairs)


def compatibility(d, names):
    text = "Available in mod_websocket %s and later." % d["Since"]
    for extra in (one_line(d.get("Compatibility", "")), alias_note(d)):
        if extra:
            text += " " + extra[0].upper() + extra[1:]
            if not text.endswith("."):
                text += "."
    return inline(text, names, d["Name"])


def directive_section(module, d, names):
    name = d["Name"]
    return ('<div class="directive-section">\n<h2 id="%s">%s Directive</h2>\n'
            % (anchor(name), name)
            + directive_table(module, name, d["Syntax"], d,
                              inline(one_line(d["Description"]), names, name),
                              names, compatibility(d, names))
            + paragraphs(d["Explanation"], names, name)
            + example_box(d["Example"]) + "</div>\n")


def alias_section(module, d, alias, names):
    syntax = alias + d["Syntax"][len(d["Name"]):]
    text = ("Deprecated: apache-websocket's name of %s, which it sets "
            "exactly as %s does; each use logs a warning." % (d["Name"],
                                                             d["Name"]))
    return ('<div class="directive-section">\n<h2 id="%s">%s Directive</h2>\n'
            % (anchor(alias), alias)
            + directive_table(module, alias, syntax, d,
                              inline(alias_help(d), names, alias), names,
                              inline("Accepted for apache-websocket "
                                     "configurations; use %s." % d["Name"],
                                     names, alias))
            + paragraphs(text, names, alias) + "</div>\n")


def render_html(module, directives):
    names = all_names(directives)
    sections = []
    for d in directives:
        sections.append((d["Name"], directive_section(module, d, names)))
        for a in d["aliases"]:
            sections.append((a, alias_section(module, d, a, names)))
    sections.sort(key=lambda s: s[0].lower())
    toc = "".join('<li><a href="#%s">%s</a></li>\n' % (anchor(n), n)
                  for n, _ in sections)
    head = rows([
        ("Description", inline(one_line(module["Description"]), names)),
        ("Status", module["Status"]),
        ("Module Identifier", module["Identifier"]),
        ("Source File", module["Source"]),
        ("Version", module["Version"]),
        ("Compatibility", inline(one_line(module["Compatibility"]), names)),
    ])
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n"
            "<meta charset=\"utf-8\">\n"
            "<!-- Generated by docs/gen_directives.py from "
            "docs/directives.def: do not edit. -->\n"
            "<title>mod_websocket %s - Apache HTTP Server module</title>\n"
            "<style>%s</style>\n</head>\n<body>\n"
            "<div id=\"preamble\">\n<h1>Apache Module %s</h1>\n"
            "<table class=\"module\">\n%s</table>\n<h3>Summary</h3>\n%s%s"
            "</div>\n<div id=\"quickview\">\n<h3>Directives</h3>\n"
            "<ul id=\"toc\">\n%s</ul>\n</div>\n%s</body>\n</html>\n"
            % (module["Version"], CSS, module["Name"], head,
               paragraphs(module["Summary"], names),
               example_box(module["Example"]) if module.get("Example") else "",
               toc, "".join(s for _, s in sections)))


# ---- README -----------------------------------------------------------------

def wrap(text, indent=4):
    """Filled to 76 columns; two spaces after a sentence stay two."""
    joined = " ".join(line.strip() for line in text.strip().splitlines())
    joined = re.sub(r"([.:])  +", "\\1\0 ", joined)
    filled = textwrap.fill(joined, width=76, initial_indent=" " * indent,
                           subsequent_indent=" " * indent,
                           break_on_hyphens=False)
    return "\n".join(l.replace("\0", " ").rstrip()
                     for l in filled.split("\n")) + "\n"


def readme_entry(d):
    head = "Context: %s" % ", ".join(d["contexts"])
    if d.get("Default"):
        head = "Default: %s.  %s" % (one_line(d["Default"]), head)
    out = [d["Syntax"] + "\n", wrap(head)]
    for i, para in enumerate(re.split(r"\n\s*\n", d["Explanation"])):
        out.append(("\n" if i else "") + textwrap.indent(para.strip("\n"),
                                                           "    ") + "\n")
    if d.get("Compatibility"):
        out.append(wrap("Compatibility: %s." % one_line(d["Compatibility"])
                        .rstrip(".")))
    if d["aliases"]:
        out.append(wrap(alias_note(d)))
    example = d["Example"].splitlines()
    if len(example) == 1 and len(example[0]) <= 78 - len("    Example: "):
        out.append("    Example: %s\n" % example[0])
    else:
        out.append("    Example:\n" + "".join("        %s\n" % l
                                             for l in example))
    return "".join(out)


def render_readme(readme, directives):
    lines = readme.split("\n")
    try:
        begin = lines.index(README_BEGIN)
        end = lines.index(README_END, begin)
    except ValueError:
        raise DefError("README lacks the lines %r and %r"
                       % (README_BEGIN, README_END))
    body = "\n".join(readme_entry(d) for d in directives)
    return "\n".join(lines[:begin + 1]) + "\n\n" + body + "\n" + \
        "\n".join(lines[end:])


# ---- main -------------------------------------------------------------------

def outputs(repo):
    """{relative path: text} of every generated file."""
    module, directives = load(repo)
    readme = open(os.path.join(repo, OUT_README)).read()
    return {OUT_HEADER: render_header(module, directives),
            OUT_HTML: render_html(module, directives),
            OUT_README: render_readme(readme, directives)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repo", default=REPO, help="the source tree")
    ap.add_argument("--out", help="write into this directory instead")
    ap.add_argument("--check", action="store_true",
                    help="write nothing; exit 1 when a file is stale")
    args = ap.parse_args(argv)
    try:
        files = outputs(args.repo)
    except (DefError, OSError) as e:
        print("gen_directives: %s" % e, file=sys.stderr)
        return 2
    stale = []
    for rel, text in sorted(files.items()):
        path = os.path.join(args.repo, rel)
        current = open(path).read() if os.path.exists(path) else None
        if args.check:
            if current != text:
                stale.append(rel)
            continue
        dest = os.path.join(args.out, rel) if args.out else path
        if args.out or current != text:
            os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
            with open(dest, "w") as f:
                f.write(text)
    if stale:
        print("stale (run make docs): %s" % ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
