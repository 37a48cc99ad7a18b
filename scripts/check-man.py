#!/usr/bin/env python3
"""The manual page against the tool (meson test `man-page-options`, suite docs).

Usage: scripts/check-man.py DIFFCL_BINARY [MAN_PAGE]    (default: docs/diffcl.1)

The page describes exactly the commands `diffcl --help` lists (a `.B <command>` paragraph
under COMMANDS each), and for every one it runs `diffcl <command> --help` and checks:
 1. every option the help lists is on the page, and every option the page lists is in the
    help (an option added to the tool but not to the page, or a removed one still documented);
 2. where the page gives a plain default right after an option, `.BI \\-\\-name " N"` then a
    line `(300),`, the help gives the same default: `--name N (default 300)`, `--name X (300)`,
    or `--name 300` on its `Defaults:` line.

Uses only Python's standard library. Exit 0 when everything agrees, 1 with a list otherwise.
"""
import os
import re
import subprocess
import sys

OPTION = re.compile(r"--[a-z][a-z0-9-]*")
# a plain default: a number, or one lower-case word (not prose like "the trainer's" or "all cores")
PLAIN = re.compile(r"^\(([0-9][0-9.e+-]*|[a-z][a-z0-9-]*)\)[,.]?( or)?$")


def man_sections(text):
    """{command: [lines]} of the `.B command` paragraphs under `.SH COMMANDS`."""
    sections, current, in_commands = {}, None, False
    lines = text.replace("\\-", "-").splitlines()
    for i, line in enumerate(lines):
        if line.startswith(".SH"):
            in_commands = "COMMANDS" in line
            current = None
            continue
        if not in_commands:
            continue
        if line.startswith(".B ") and i > 0 and lines[i - 1] == ".TP":
            current = line[3:].strip()
            sections[current] = []
        elif current:
            sections[current].append(line)
    return sections


def man_defaults(lines):
    """{option: default} where a `.BI --opt " X"` line is followed by a plain `(default)` line."""
    out = {}
    for a, b in zip(lines, lines[1:]):
        m = re.match(r'^\.BI (--[a-z0-9-]+) ', a)
        d = PLAIN.match(b.strip())
        if m and d:
            out[m.group(1)] = d.group(1)
    return out


def help_default(help_text, option):
    """The default the help gives for an option, or None."""
    esc = re.escape(option)
    for pattern in (esc + r"\b[^\n(]*\(default ([^;,)\s]+)",  # --iters N  (default 2000)
                    esc + r" [A-Za-z|,]+ \(([^;,)\s]+)\)"):     # --momentum X (0.9)
        m = re.search(pattern, help_text)
        if m:
            return m.group(1)
    # a "Defaults:" line and its indented continuation lines: --iters 300 --out demo-run
    block = re.search(r"Defaults:[^\n]*(?:\n[ \t]+--[^\n]*)*", help_text)
    m = re.search(r"(?:^|\s)" + esc + r" (\S+)", block.group(0)) if block else None
    return m.group(1) if m else None


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    binary = sys.argv[1]
    page = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "docs", "diffcl.1")
    with open(page, encoding="utf-8") as f:
        sections = man_sections(f.read())
    problems = []
    if not sections:
        problems.append(f"{page}: no commands found under .SH COMMANDS")
    # every command `diffcl --help` lists has its paragraph on the page, and no other
    top = subprocess.run([binary, "--help"], capture_output=True, text=True).stdout
    listed = set(re.findall(r"^  ([a-z][a-z0-9-]*)  ", top.split("commands:", 1)[-1], re.M))
    if not listed:
        problems.append("diffcl --help lists no commands")
    for cmd in sorted(listed - set(sections)):
        problems.append(f"command {cmd} is in diffcl --help but has no paragraph on the page")
    for cmd in sorted(set(sections) - listed):
        problems.append(f"the page describes {cmd}, which diffcl --help does not list")
    for cmd, lines in sections.items():
        run = subprocess.run([binary, cmd, "--help"], capture_output=True, text=True)
        if run.returncode != 0:
            problems.append(f"diffcl {cmd} --help exits {run.returncode}")
            continue
        help_text = run.stdout
        in_help = set(OPTION.findall(help_text)) - {"--help"}
        in_page = set(OPTION.findall("\n".join(lines))) - {"--help"}
        for o in sorted(in_help - in_page):
            problems.append(f"{cmd}: {o} is in --help but not on the page")
        for o in sorted(in_page - in_help):
            problems.append(f"{cmd}: {o} is on the page but not in --help")
        for o, d in sorted(man_defaults(lines).items()):
            h = help_default(help_text, o)
            if h is None:
                problems.append(f"{cmd}: the page gives {o} default {d}, --help gives none")
            elif h != d:
                problems.append(f"{cmd}: {o} default is {d} on the page, {h} in --help")
    for p in problems:
        print(p)
    print(f"man page: {len(sections)} commands checked, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
