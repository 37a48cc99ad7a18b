#!/usr/bin/env python3
"""pkg-config test: install the build into a temporary DESTDIR, compile a one-file program
with `cc ex.c $(pkg-config --cflags --libs diffcl)` against it, run it and check its output.

Skipped (exit 77) when DIFFCL_SKIP_INSTALL_TEST is set (the sanitizer stage of CI, where a
program linked without the sanitizer runtime cannot load the instrumented library).

usage: check_pkgconfig.py [--meson "CMD"] --build-root DIR --prefix P --libdir L
                          --cc "CMD" --pkg-config PKGCONFIG --example EX.c --version V
"""
import argparse
import os
import shutil
import sys
import tempfile

import abi_util as u


def main():
    if os.environ.get("DIFFCL_SKIP_INSTALL_TEST"):
        u.skip("DIFFCL_SKIP_INSTALL_TEST is set")
    ap = argparse.ArgumentParser()
    ap.add_argument("--meson", default="meson")
    for opt in ("--build-root", "--prefix", "--libdir", "--cc", "--pkg-config",
                "--example", "--version"):
        ap.add_argument(opt, required=True)
    ap.add_argument("--keep", action="store_true", help="keep the DESTDIR")
    a = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="diffcl-pkgconfig-")
    try:
        dest = os.path.join(tmp, "destdir")
        prefix = a.prefix if os.path.isabs(a.prefix) else "/" + a.prefix
        libdir = a.libdir if os.path.isabs(a.libdir) else os.path.join(prefix, a.libdir)
        # The test runner has already built everything: install without rebuilding (a
        # rebuild would race the build folder's lock held by `meson test`).
        u.run(u.meson_of_build(a.build_root, a.meson) + ["install", "-C", a.build_root, "--no-rebuild",
                                      "--destdir", dest, "--quiet"])
        inst_lib = dest + libdir
        inst_inc = dest + os.path.join(prefix, "include", "diffcl")
        problems = []
        for f in ("libdiffcl.so", "libdiffcl.so.0", "libdiffcl.so." + a.version,
                  os.path.join("pkgconfig", "diffcl.pc")):
            if not os.path.lexists(os.path.join(inst_lib, f)):
                problems.append("not installed: %s" % os.path.join(inst_lib, f))
        src_inc = os.path.join(os.path.dirname(os.path.abspath(a.example)), "..", "..",
                               "include", "diffcl")
        for h in sorted(os.listdir(src_inc)):
            if h.endswith(".h") and not os.path.isfile(os.path.join(inst_inc, h)):
                problems.append("header not installed: %s (include/diffcl/meson.build lists "
                                "the headers at configure time: reconfigure the build)"
                                % os.path.join(inst_inc, h))
        if problems:
            u.fail("\n".join(problems))

        env = dict(os.environ)
        env["PKG_CONFIG_PATH"] = os.pathsep.join(
            [os.path.join(inst_lib, "pkgconfig")] +
            ([env["PKG_CONFIG_PATH"]] if env.get("PKG_CONFIG_PATH") else []))
        env["PKG_CONFIG_SYSROOT_DIR"] = dest
        modversion = u.run([a.pkg_config, "--modversion", "diffcl"], env=env).stdout.strip()
        if modversion != a.version:
            u.fail("pkg-config --modversion diffcl says %s, expected %s" % (modversion, a.version))
        flags = u.run([a.pkg_config, "--cflags", "--libs", "diffcl"], env=env).stdout.split()
        print("pkg-config flags: " + " ".join(flags))
        if not any(f.startswith("-I" + dest) for f in flags) or \
           not any(f.startswith("-L" + dest) for f in flags):
            u.fail("pkg-config flags do not point into the DESTDIR %s" % dest)

        exe = os.path.join(tmp, "example")
        u.run(u.split_cmd(a.cc) + ["-std=c11", "-Wall", "-Wextra", "-Werror", a.example,
                                   "-o", exe] + flags)
        env_run = dict(os.environ)
        env_run["LD_LIBRARY_PATH"] = os.pathsep.join(
            [inst_lib] + ([env_run["LD_LIBRARY_PATH"]] if env_run.get("LD_LIBRARY_PATH") else []))
        ldd = shutil.which("ldd")
        if ldd:
            out = u.run([ldd, exe], env=env_run).stdout
            line = [l for l in out.splitlines() if "libdiffcl.so" in l]
            if not line or dest not in line[0]:
                u.fail("the example does not load the installed libdiffcl:\n" + out)
        p = u.run([exe], env=env_run)
        sys.stdout.write(p.stdout)
        want = ["diffcl %s (header %s)" % (a.version, a.version), "sum = 10.5"]
        got = p.stdout.splitlines()
        if got != want:
            u.fail("example printed %r, expected %r" % (got, want))
        print("OK")
    finally:
        if a.keep:
            print("kept " + tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
