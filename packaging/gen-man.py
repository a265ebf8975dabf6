#!/usr/bin/env python3
"""Man pages from swift-argument-parser's `--experimental-dump-help` JSON.

One page per command, named like git's: edgectl.1, edgectl-model.1, edgectl-model-import.1, so
`man edgectl-model-import` works and every page lists its subcommands under SEE ALSO.

argument-parser's own generate-manual plugin rebuilds the whole package in another configuration
(a second full release build, ~15 min here); the dump-help JSON of the binary already being
packaged carries the same information, so the pages always match the shipped binary.

usage: gen-man.py [--section N] [--extra FILE] [--date YYYY-MM-DD] [--version V] HELP.json OUTDIR
  --extra   roff appended to the top-level page (FILES, SIGNALS, ... that --help cannot know)
"""
import argparse
import json
import os
import sys


def roff(text):
    """Escapes plain text for roff: backslashes, and lines starting with . or '."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    out = []
    for line in text.split("\n"):
        if line.startswith(".") or line.startswith("'"):
            line = "\\&" + line
        out.append(line)
    return "\n".join(out)


def paragraphs(text):
    """Blank-line separated paragraphs, each as its own .PP block; indented lines stay verbatim."""
    blocks, cur = [], []
    for line in text.strip("\n").split("\n"):
        if line.strip() == "":
            if cur:
                blocks.append(cur)
                cur = []
        else:
            cur.append(line)
    if cur:
        blocks.append(cur)
    out = []
    for block in blocks:
        if all(l.startswith(" ") for l in block):
            out.append(".PP\n.nf\n" + roff("\n".join(l for l in block)) + "\n.fi")
        else:
            out.append(".PP\n" + roff("\n".join(l.strip() for l in block)))
    return "\n".join(out)


def flag_name(n):
    kind = n["kind"]
    prefix = "--" if kind == "long" else "-"
    return prefix + n["name"]


def arg_label(a):
    """How an argument appears in SYNOPSIS/OPTIONS, e.g. `\\-\\-dir <dir>` or `<file>`."""
    value = a.get("valueName") or "value"
    if a["kind"] == "positional":
        return "\\fI<%s>\\fR" % roff(value) + ("..." if a.get("isRepeating") else "")
    names = a.get("names") or ([a["preferredName"]] if a.get("preferredName") else [])
    label = ", ".join("\\fB%s\\fR" % roff(flag_name(n)) for n in names)
    if a["kind"] == "option":
        label += " \\fI<%s>\\fR" % roff(value)
    return label


def synopsis_item(a):
    if a["kind"] == "positional":
        s = "\\fI<%s>\\fR" % roff(a.get("valueName") or "value")
        if a.get("isRepeating"):
            s += " ..."
    else:
        n = a.get("preferredName") or (a.get("names") or [{"kind": "long", "name": "?"}])[0]
        s = "\\fB%s\\fR" % roff(flag_name(n))
        if a["kind"] == "option":
            s += " \\fI<%s>\\fR" % roff(a.get("valueName") or "value")
    if a.get("isOptional"):
        s = "[" + s + "]"
    return s


def page_name(path):
    return "-".join(path)


def write_page(cmd, path, section, date, version, outdir, extra, root_name):
    name = page_name(path)
    visible_args = [a for a in (cmd.get("arguments") or []) if a.get("shouldDisplay", True)]
    # argument-parser adds a `help` subcommand to every command group; `--help` covers it.
    subs = [s for s in (cmd.get("subcommands") or [])
            if s.get("shouldDisplay", True) and s["commandName"] != "help"]
    lines = []
    lines.append('.TH "%s" "%s" "%s" "%s %s" "%s"' % (
        name.upper(), section, date, root_name, version, "System Administration" if section == "8"
        else "User Commands"))
    lines.append(".SH NAME")
    lines.append("%s \\- %s" % (roff(name), roff(cmd.get("abstract") or " ".join(path))))
    lines.append(".SH SYNOPSIS")
    syn = "\\fB%s\\fR" % roff(" ".join(path))
    if subs:
        syn += " \\fI<subcommand>\\fR"
    items = [synopsis_item(a) for a in visible_args]
    lines.append(".nh\n.ad l\n" + " ".join([syn] + items) + "\n.ad\n.hy")
    if cmd.get("discussion") or cmd.get("abstract"):
        lines.append(".SH DESCRIPTION")
        lines.append(paragraphs(cmd.get("discussion") or cmd.get("abstract")))
    if visible_args:
        lines.append(".SH OPTIONS")
        for a in visible_args:
            lines.append(".TP")
            lines.append(arg_label(a))
            text = a.get("abstract") or ""
            if a.get("discussion"):
                text = (text + "\n\n" + a["discussion"]).strip()
            body = paragraphs(text)[len(".PP\n"):] if text else ""
            if a.get("allValueStrings") or a.get("allValues"):
                vals = a.get("allValueStrings") or a.get("allValues")
                body += ("\n.br\n" if body else "") + "Values: " + roff(", ".join(vals)) + "."
            if a.get("defaultValue") is not None:
                body += ("\n.br\n" if body else "") + "Default: " + roff(str(a["defaultValue"])) + "."
            lines.append(body.replace("\n.PP\n", "\n.IP\n"))
    if subs:
        lines.append(".SH SUBCOMMANDS")
        for s in subs:
            lines.append(".TP")
            lines.append("\\fB%s\\fR" % roff(s["commandName"]))
            lines.append(roff(s.get("abstract") or ""))
            lines.append("See \\fB%s\\fR(%s)." % (roff(page_name(path + [s["commandName"]])), section))
    if extra and len(path) == 1:
        with open(extra, encoding="utf-8") as f:
            lines.append(f.read().rstrip("\n"))
    see = []
    if len(path) > 1:
        see.append("\\fB%s\\fR(%s)" % (roff(page_name(path[:-1])), section))
    see += ["\\fB%s\\fR(%s)" % (roff(page_name(path + [s["commandName"]])), section) for s in subs]
    if see:
        lines.append(".SH SEE ALSO")
        lines.append(",\n".join(see))
    out = os.path.join(outdir, "%s.%s" % (name, section))
    with open(out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    written = [out]
    for s in subs:
        written += write_page(s, path + [s["commandName"]], section, date, version, outdir, None, root_name)
    return written


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--section", default="1")
    p.add_argument("--extra")
    p.add_argument("--date", default="")
    p.add_argument("--version", default="")
    p.add_argument("help_json")
    p.add_argument("outdir")
    a = p.parse_args()
    try:
        with open(a.help_json, encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit("gen-man: %s is not --experimental-dump-help JSON: %s" % (a.help_json, e))
    if "command" not in info or "commandName" not in info["command"]:
        sys.exit("gen-man: %s has no 'command.commandName'; is it --experimental-dump-help output?"
                 % a.help_json)
    root = info["command"]["commandName"]
    for path in write_page(info["command"], [root], a.section, a.date, a.version, a.outdir, a.extra, root):
        print(path)


if __name__ == "__main__":
    main()
