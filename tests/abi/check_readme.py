#!/usr/bin/env python3
"""README example test: the first ```c block of README.md compiles as C11 (warnings as
errors) against the public headers, links against the built libdiffcl and runs to exit 0.

usage: check_readme.py --readme README.md --include DIR --cc "CMD" --lib LIBDIFFCL_SO
                       [--sanitize LIST] --workdir DIR
"""
import argparse
import os
import re
import sys

import abi_util as u


def main():
    ap = argparse.ArgumentParser()
    for opt in ("--readme", "--include", "--cc", "--lib", "--workdir"):
        ap.add_argument(opt, required=True)
    ap.add_argument("--sanitize", default="")
    a = ap.parse_args()

    with open(a.readme, encoding="utf-8") as f:
        m = re.search(r"^```c[ \t]*\n(.*?)^```", f.read(), flags=re.S | re.M)
    if not m:
        u.fail("%s has no ```c example block" % a.readme)
    os.makedirs(a.workdir, exist_ok=True)
    src = os.path.join(a.workdir, "readme_example.c")
    with open(src, "w") as f:
        f.write(m.group(1))
    exe = os.path.join(a.workdir, "readme_example")
    lib = os.path.abspath(a.lib)
    san = ["-fsanitize=" + a.sanitize] if a.sanitize and a.sanitize != "none" else []
    u.run(u.split_cmd(a.cc) + ["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic"] + san +
          ["-I", os.path.abspath(a.include), src, "-o", exe, lib,
           "-Wl,-rpath," + os.path.dirname(lib)])
    p = u.run([exe])
    sys.stdout.write(p.stdout)
    print("OK: the README example (%d lines) compiles and runs" % m.group(1).count("\n"))


if __name__ == "__main__":
    main()
