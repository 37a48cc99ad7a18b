#!/usr/bin/env python3
"""Suite `examples`: what a user of an installed libdiffcl sees.

install      `meson install --destdir` of the build: headers, libdiffcl.so.*, diffcl.pc,
             the diffcl tool, its man page and the documentation in their FHS places.
examples     every examples/*.c and examples/*.cpp (except those listed in SKIP) built with
             `cc`/`c++` and `pkg-config --cflags --libs diffcl` against that tree (warnings
             as errors, pedantic), then run in a chain: train_phantom -> infer_nifti ->
             label_metrics, and pipeline_step, checking what each prints and writes.
uninstalled  label_metrics built against the build tree through diffcl-uninstalled.pc.
subproject   a throw-away meson project that takes libdiffcl with dependency('diffcl')
             from subprojects/diffcl (a link to this source tree), builds and runs.

Skipped (exit 77) when DIFFCL_SKIP_INSTALL_TEST is set (the sanitizer stage of CI: a
program built without the sanitizer runtime cannot load the instrumented library).

usage: check_examples.py MODE --source-root S --build-root B --prefix P --libdir L
                         --bindir B --mandir M --datadir D --cc "CMD" [--cxx "CMD"]
                         --pkg-config PKGCONFIG --version V
"""
import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "abi"))
from abi_util import meson_of_build  # noqa: E402  (shared with the abi suite's install test)

SKIP = 77
# Examples that belong to other documents and take minutes (built by meson, not run here).
SKIP_RUN = {"diffusion_toy"}


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def run(cmd, env=None, cwd=None, check=True, show=True):
    print("+ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    p = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True)
    if show and p.stdout:
        sys.stdout.write(p.stdout)
    if check and p.returncode != 0:
        if not show:
            sys.stdout.write(p.stdout)
        fail("exit %d: %s" % (p.returncode, " ".join(cmd)))
    return p


def absdir(prefix, d):
    return d if os.path.isabs(d) else os.path.join(prefix, d)


class Ctx:
    pass


def install(a, tmp):
    """meson install --destdir; returns a Ctx with the installed paths."""
    c = Ctx()
    c.dest = os.path.join(tmp, "destdir")
    prefix = a.prefix if os.path.isabs(a.prefix) else "/" + a.prefix
    # `meson test` has built everything: never rebuild here (it would race the build lock).
    run(meson_of_build(a.build_root) + ["install", "-C", a.build_root, "--no-rebuild",
                                        "--destdir", c.dest, "--quiet"])
    c.prefix = c.dest + prefix
    c.lib = c.dest + absdir(prefix, a.libdir)
    c.bin = c.dest + absdir(prefix, a.bindir)
    c.man = c.dest + absdir(prefix, a.mandir)
    c.doc = os.path.join(c.dest + absdir(prefix, a.datadir), "doc", "diffcl")
    c.inc = os.path.join(c.prefix, "include", "diffcl")
    return c


def check_layout(a, c):
    want = [os.path.join(c.lib, "libdiffcl.so"), os.path.join(c.lib, "libdiffcl.so.0"),
            os.path.join(c.lib, "libdiffcl.so." + a.version),
            os.path.join(c.lib, "pkgconfig", "diffcl.pc"),
            os.path.join(c.bin, "diffcl"),
            os.path.join(c.man, "man1", "diffcl.1"),
            os.path.join(c.doc, "README.md"), os.path.join(c.doc, "CHANGELOG.md"),
            os.path.join(c.doc, "docs", "abi-policy.md"), os.path.join(c.doc, "docs", "python.md"),
            os.path.join(c.doc, "docs", "figures", "hf_bands.png")]
    src_inc = os.path.join(a.source_root, "include", "diffcl")
    want += [os.path.join(c.inc, h) for h in sorted(os.listdir(src_inc)) if h.endswith(".h")]
    missing = [w for w in want if not os.path.lexists(w)]
    if missing:
        fail("not installed:\n  " + "\n  ".join(missing))
    if os.path.exists(os.path.join(c.doc, "HELPERS.md")):
        fail("docs/HELPERS.md (team notes) should not be installed")
    man = open(os.path.join(c.man, "man1", "diffcl.1"), encoding="utf-8").read()
    if ".TH DIFFCL 1" not in man:
        fail("diffcl.1 is not a man page (.TH missing)")
    env = dict(os.environ, LD_LIBRARY_PATH=c.lib)
    out = run([os.path.join(c.bin, "diffcl"), "version"], env=env).stdout
    if a.version not in out:
        fail("the installed diffcl tool printed %r, not version %s" % (out, a.version))
    print("install layout OK")


def pkg_flags(a, pcdir, sysroot=None):
    env = dict(os.environ)
    env["PKG_CONFIG_PATH"] = pcdir
    env.pop("PKG_CONFIG_LIBDIR", None)
    if sysroot:
        env["PKG_CONFIG_SYSROOT_DIR"] = sysroot
    v = run([a.pkg_config, "--modversion", "diffcl"], env=env).stdout.strip()
    if v != a.version:
        fail("pkg-config --modversion diffcl says %s, expected %s" % (v, a.version))
    return run([a.pkg_config, "--cflags", "--libs", "diffcl"], env=env).stdout.split()


def build_example(a, src, out, flags):
    if src.endswith(".cpp"):
        if not a.cxx:
            return False
        cmd = shlex.split(a.cxx) + ["-std=c++17"]
    else:
        cmd = shlex.split(a.cc) + ["-std=c11"]
    # -lm: as docs/packaging.md says, for the examples that call <math.h> themselves
    run(cmd + ["-Wall", "-Wextra", "-Werror", "-pedantic", src, "-o", out] + flags + ["-lm"])
    return True


def expect(pattern, text, what):
    m = re.search(pattern, text, flags=re.M)
    if not m:
        fail("%s: expected output matching %r" % (what, pattern))
    return m


def mode_examples(a, tmp):
    c = install(a, tmp)
    check_layout(a, c)
    flags = pkg_flags(a, os.path.join(c.lib, "pkgconfig"), sysroot=c.dest)
    print("pkg-config flags: " + " ".join(flags))
    if not any(f.startswith("-I" + c.dest) for f in flags) or \
       not any(f.startswith("-L" + c.dest) for f in flags):
        fail("pkg-config flags do not point into the DESTDIR %s" % c.dest)

    exdir = os.path.join(a.source_root, "examples")
    exe = {}
    for f in sorted(os.listdir(exdir)):
        stem, ext = os.path.splitext(f)
        if ext not in (".c", ".cpp"):
            continue
        out = os.path.join(tmp, stem)
        if build_example(a, os.path.join(exdir, f), out, flags):
            exe[stem] = out
        else:
            print("note: no C++ compiler; %s not built" % f)
    env = dict(os.environ, LD_LIBRARY_PATH=c.lib, OMP_WAIT_POLICY="passive")
    ldd = shutil.which("ldd")
    if ldd:
        for name, path in exe.items():
            line = [l for l in run([ldd, path], env=env, show=False).stdout.splitlines()
                    if "libdiffcl.so" in l]
            if not line or c.dest not in line[0]:
                fail("%s does not load the installed libdiffcl: %s" % (name, line))

    run_dir = os.path.join(tmp, "run")
    # train -> infer -> metrics, on the phantom
    out = run([exe["train_phantom"], run_dir, "2", "2"], env=env).stdout
    expect(r"^it +2 +loss [0-9.]+", out, "train_phantom")
    for f in ("model.safetensors", "last.safetensors"):
        if not os.path.isfile(os.path.join(run_dir, f)):
            fail("train_phantom did not write %s" % f)
    image = os.path.join(run_dir, "heldout_image.nii.gz")
    label = os.path.join(run_dir, "heldout_label.nii.gz")
    model = os.path.join(run_dir, "model.safetensors")
    have_nifti = os.path.isfile(image) and os.path.isfile(label)
    if have_nifti:
        pred = os.path.join(run_dir, "pred.nii.gz")
        out = run([exe["infer_nifti"], model, image, pred, "64x64", "32x32"], env=env).stdout
        expect(r"pred\.nii\.gz: image 96x96", out, "infer_nifti")
        if not os.path.isfile(pred):
            fail("infer_nifti did not write %s" % pred)
        out = run([exe["label_metrics"], label, label], env=env).stdout
        expect(r"^ +1 +1\.0000 +1\.0000 +0\.000 +0\.000 +0\.000", out, "label_metrics (self)")
        out = run([exe["label_metrics"], pred, label, "2"], env=env).stdout
        m = expect(r"^ +1 +([0-9.]+) +([0-9.]+)", out, "label_metrics")
        if not 0.0 <= float(m.group(1)) <= 1.0:
            fail("label_metrics: dice %s out of [0, 1]" % m.group(1))
    else:
        print("note: this build has no NIfTI support: infer_nifti and label_metrics not run")
    if "pipeline_step" in exe:
        out = run([exe["pipeline_step"], model], env=env).stdout
        m = expect(r"dice against the phantom's reference: ([0-9.]+)", out, "pipeline_step")
        if not 0.0 <= float(m.group(1)) <= 1.0:
            fail("pipeline_step: dice %s out of [0, 1]" % m.group(1))
        if have_nifti:
            out = run([exe["pipeline_step"], model, image], env=env).stdout
            expect(r"segmented in [0-9.]+ s", out, "pipeline_step (NIfTI)")
        bad = run([exe["pipeline_step"], os.path.join(tmp, "missing.safetensors")], env=env,
                  check=False)
        if bad.returncode != 1 or "missing.safetensors" not in bad.stdout:
            fail("pipeline_step with a missing model: exit %d, %r" % (bad.returncode, bad.stdout))
    for name in sorted(set(exe) - {"train_phantom", "infer_nifti", "label_metrics",
                                   "pipeline_step"} - SKIP_RUN):
        print("note: %s is built but has no run check here" % name)
    print("OK")


def mode_uninstalled(a, tmp):
    pcdir = a.build_root
    pc = os.path.join(pcdir, "diffcl-uninstalled.pc")
    if not os.path.isfile(pc):
        fail("%s was not generated" % pc)
    flags = pkg_flags(a, pcdir)
    print("pkg-config flags: " + " ".join(flags))
    inc = os.path.join(a.source_root, "include")
    if "-I" + inc not in flags:
        fail("diffcl-uninstalled.pc does not name the source tree's include/ (%s)" % inc)
    libdir = os.path.join(a.build_root, "lib")
    if "-L" + libdir not in flags:
        fail("diffcl-uninstalled.pc does not name the build tree's lib/ (%s)" % libdir)
    exe = os.path.join(tmp, "label_metrics")
    build_example(a, os.path.join(a.source_root, "examples", "label_metrics.c"), exe, flags)
    env = dict(os.environ, LD_LIBRARY_PATH=libdir)
    p = run([exe], env=env, check=False)
    if p.returncode != 2 or "usage:" not in p.stdout:
        fail("label_metrics without arguments should print its usage and exit 2")
    print("OK")


SUBPROJECT_MESON = """project('uses-diffcl', 'c', default_options: ['c_std=c11'])
# libdiffcl from subprojects/diffcl, without its tests, examples and benchmarks
diffcl_dep = dependency('diffcl', fallback: ['diffcl', 'diffcl_dep'],
  default_options: ['tests=false', 'examples=false', 'bench=false'])
executable('hello', 'hello.c', dependencies: diffcl_dep)
"""
SUBPROJECT_C = """#include <stdio.h>
#include <diffcl/diffcl.h>
int main(void)
{
    diffcl_context *ctx = NULL;
    if (diffcl_context_create(NULL, &ctx) != DIFFCL_OK) return 1;
    printf("diffcl %s as a subproject, %d threads\\n", diffcl_version_string(),
           diffcl_context_threads(ctx));
    diffcl_context_free(ctx);
    return 0;
}
"""


def mode_subproject(a, tmp):
    proj = os.path.join(tmp, "uses-diffcl")
    os.makedirs(os.path.join(proj, "subprojects"))
    with open(os.path.join(proj, "meson.build"), "w") as f:
        f.write(SUBPROJECT_MESON)
    with open(os.path.join(proj, "hello.c"), "w") as f:
        f.write(SUBPROJECT_C)
    os.symlink(a.source_root, os.path.join(proj, "subprojects", "diffcl"))
    meson = meson_of_build(a.build_root)
    build = os.path.join(tmp, "build")
    env = dict(os.environ)
    # Only the subproject: never a diffcl.pc of this machine.
    run(meson + ["setup", build, proj, "--wrap-mode=forcefallback"], env=env, show=False)
    run(["ninja", "-C", build, "hello"] if shutil.which("ninja") else
        meson + ["compile", "-C", build, "hello"], env=env, show=False)
    out = run([os.path.join(build, "hello")], env=env).stdout
    if ("diffcl %s as a subproject" % a.version) not in out:
        fail("unexpected output %r" % out)
    print("OK")


def main():
    if os.environ.get("DIFFCL_SKIP_INSTALL_TEST"):
        print("SKIP: DIFFCL_SKIP_INSTALL_TEST is set")
        sys.exit(SKIP)
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["examples", "uninstalled", "subproject"])
    for opt in ("--source-root", "--build-root", "--prefix", "--libdir", "--bindir",
                "--mandir", "--datadir", "--cc", "--pkg-config", "--version"):
        ap.add_argument(opt, required=True)
    ap.add_argument("--cxx", default="")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="diffcl-examples-%s-" % a.mode)
    try:
        {"examples": mode_examples, "uninstalled": mode_uninstalled,
         "subproject": mode_subproject}[a.mode](a, tmp)
    finally:
        if a.keep:
            print("kept " + tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
