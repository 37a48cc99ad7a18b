#!/usr/bin/env python3
"""Exported-symbols test: the dynamic symbols libdiffcl.so defines must be exactly the
functions (and objects) declared with DIFFCL_API in include/diffcl/*.h.

usage: check_symbols.py NM LIBDIFFCL_SO INCLUDE_DIR
"""
import sys

import abi_util as u


def exported(nm, lib):
    out = u.run([nm, "-D", "--defined-only", lib]).stdout
    syms = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        kind, name = parts[-2], parts[-1]
        if kind in ("A", "a"):  # version-node names (DIFFCL_0.1) are absolute symbols
            continue
        if kind.upper() not in "TDBRVWGSI" and kind not in ("u", "i"):
            continue
        syms[name.split("@")[0]] = kind
    return syms


def main():
    if len(sys.argv) != 4:
        u.fail(__doc__)
    nm, lib, include_dir = sys.argv[1:]
    have = exported(nm, lib)
    want = {}
    for h in u.public_headers(include_dir):
        for name, decl in u.declared_api(h):
            if name in want:
                u.fail("%s declared twice with DIFFCL_API (%s and %s)" % (name, want[name], h))
            want[name] = h

    problems = []
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    if missing:
        problems.append("declared with DIFFCL_API but not exported by %s (%d):" % (lib, len(missing)))
        problems += ["  %-40s %s" % (n, want[n]) for n in missing]
    if extra:
        problems.append("exported but not declared with DIFFCL_API in any public header (%d):"
                        % len(extra))
        problems += ["  %-40s (nm type %s)" % (n, have[n]) for n in extra]
    badname = sorted(n for n in set(want) | set(have) if not n.startswith("diffcl_"))
    if badname:
        problems.append("public symbols must start with diffcl_:")
        problems += ["  " + n for n in badname]

    print("%d symbols exported, %d declared" % (len(have), len(want)), flush=True)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)
    print("OK: exported symbols match the DIFFCL_API declarations")


if __name__ == "__main__":
    main()
