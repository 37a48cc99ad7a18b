"""Helpers shared by the ABI tests (standard library only)."""
import os
import re
import shlex
import subprocess
import sys

SKIP = 77  # meson's exit code for a skipped test


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def skip(msg):
    print("SKIP: " + msg)
    sys.exit(SKIP)


def run(cmd, env=None, cwd=None, check=True):
    """Run @cmd (a list), echoing it; return CompletedProcess with text output."""
    print("+ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    p = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True)
    if check and p.returncode != 0:
        sys.stdout.write(p.stdout)
        sys.stderr.write(p.stderr)
        fail("command exited with %d: %s" % (p.returncode, " ".join(cmd)))
    return p


def public_headers(include_dir):
    """Sorted paths of include/diffcl/*.h."""
    d = os.path.join(include_dir, "diffcl")
    return sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".h"))


def strip_comments(text):
    """Remove /* */ and // comments (string literals in headers hold no comment markers)."""
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def strip_preprocessor(text):
    """Drop preprocessor lines, including their backslash continuations."""
    out, cont = [], False
    for line in text.split("\n"):
        if cont or line.lstrip().startswith("#"):
            cont = line.rstrip().endswith("\\")
            continue
        out.append(line)
    return "\n".join(out)


_NOT_NAMES = {"void", "int", "char", "short", "long", "float", "double", "signed", "unsigned",
              "const", "volatile", "struct", "enum", "union", "static", "extern", "inline",
              "restrict", "__attribute__", "DIFFCL_API"}


def declared_api(header):
    """[(name, declaration)] for every DIFFCL_API declaration in @header."""
    with open(header, encoding="utf-8") as f:
        text = strip_preprocessor(strip_comments(f.read()))
    out = []
    for m in re.finditer(r"\bDIFFCL_API\b([^;{]*)[;{]", text):
        decl = " ".join(m.group(1).split())
        name = None
        for cand in re.finditer(r"\b([A-Za-z_]\w*)\s*\(", decl):
            if cand.group(1) not in _NOT_NAMES:
                name = cand.group(1)
                break
        if name is None:  # a data symbol: the last identifier before '[', '=' or the end
            ids = re.findall(r"[A-Za-z_]\w*", re.split(r"[\[=]", decl)[0])
            name = ids[-1] if ids else None
        if name is None:
            fail("%s: cannot find the name in 'DIFFCL_API %s'" % (header, decl))
        out.append((name, decl))
    return out


def init_macros(header):
    """Names of the `#define DIFFCL_..._INIT` macros in @header."""
    with open(header, encoding="utf-8") as f:
        text = strip_comments(f.read())
    return re.findall(r"^\s*#\s*define\s+(DIFFCL_\w+_INIT)\b", text, flags=re.M)


def split_cmd(s):
    return shlex.split(s) if s else []


def meson_of_build(build_root, fallback="meson"):
    """The meson command that configured @build_root (from build.ninja's regenerate rule),
    so an install uses the same meson version; else @fallback."""
    try:
        with open(os.path.join(build_root, "build.ninja"), encoding="utf-8") as f:
            lines = f.read().split("\n")
        for i, line in enumerate(lines):
            if line.startswith("rule REGENERATE_BUILD"):
                cmd = lines[i + 1].strip()
                if cmd.startswith("command =") and " --internal regenerate" in cmd:
                    return split_cmd(cmd[len("command ="):].split(" --internal regenerate")[0])
    except OSError:
        pass
    return split_cmd(fallback)
