#!/usr/bin/env python3
"""Headers test.

1. Every include/diffcl/*.h compiles alone (a TU holding only that #include, twice, so a
   missing include guard shows) as C11 and as C++17, warnings as errors, pedantic.
2. Every `#define DIFFCL_..._INIT` macro initialises its type `diffcl_..._t` from C11 and
   from C++17 (`X x = X_INIT;`), with -Wextra (so a missing field initialiser fails).
3. With --lib: a C++ program calling each type's `_init()` function links against the
   library and runs (the extern "C" guards work and _INIT agrees with _init on struct_size).

usage: check_headers.py --include DIR --cc "CMD" [--cxx "CMD"] [--lib LIBDIFFCL_SO]
                        [--nm NM] [--sanitize address,undefined] --workdir DIR
"""
import argparse
import concurrent.futures
import os
import re
import sys

import abi_util as u

C_FLAGS = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic"]
CXX_FLAGS = ["-std=c++17", "-Wall", "-Wextra", "-Werror", "-pedantic"]


def compile_tu(cmd, flags, src, obj, include_dir):
    p = u.run(cmd + flags + ["-I", include_dir, "-c", src, "-o", obj], check=False)
    if p.returncode != 0:
        return "%s:\n%s%s" % (src, p.stdout, p.stderr)
    return None


def type_of_init(macro):
    """DIFFCL_CONTEXT_OPTIONS_INIT -> diffcl_context_options."""
    return macro[:-len("_INIT")].lower()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--include", required=True)
    ap.add_argument("--cc", required=True)
    ap.add_argument("--cxx", default="")
    ap.add_argument("--lib", default="")
    ap.add_argument("--nm", default="nm")
    ap.add_argument("--sanitize", default="")
    ap.add_argument("--workdir", required=True)
    a = ap.parse_args()

    cc, cxx = u.split_cmd(a.cc), u.split_cmd(a.cxx)
    include_dir = os.path.abspath(a.include)
    work = os.path.abspath(a.workdir)
    os.makedirs(work, exist_ok=True)
    headers = u.public_headers(include_dir)
    if not headers:
        u.fail("no headers in %s/diffcl" % include_dir)
    if not cxx:
        print("note: no C++ compiler found; the C++17 checks are skipped")

    errors = []
    # 1. each header alone
    jobs = []
    for h in headers:
        name = os.path.basename(h)
        stem = name[:-2]
        # Included twice (include guard); the typedef keeps a macro-only header's TU
        # non-empty, which ISO C requires.
        body = ('#include "diffcl/%s"\n#include "diffcl/%s"\ntypedef int alone_check_t;\n'
                % (name, name))
        for lang, cmd, flags, ext in (("c11", cc, C_FLAGS, "c"), ("c++17", cxx, CXX_FLAGS, "cpp")):
            if not cmd:
                continue
            src = os.path.join(work, "alone_%s.%s" % (stem, ext))
            with open(src, "w") as f:
                f.write("/* generated: %s compiles alone as %s */\n%s" % (name, lang, body))
            jobs.append((name, lang, cmd, flags, src))
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = pool.map(lambda j: (j, compile_tu(j[2], j[3], j[4], j[4] + ".o",
                                                    include_dir)), jobs)
        for (name, lang, _, _, _), e in results:
            if e:
                errors.append("%s does not compile alone as %s\n%s" % (name, lang, e))

    # 2. the _INIT macros
    macros = []  # (macro, type, header)
    for h in headers:
        for m in u.init_macros(h):
            macros.append((m, type_of_init(m), os.path.basename(h)))
    includes = "".join('#include "diffcl/%s"\n' % os.path.basename(h) for h in headers)
    decls = "".join("    %s v%d = %s;\n    (void)v%d;\n" % (t, i, m, i)
                    for i, (m, t, _) in enumerate(macros))
    for lang, cmd, flags, ext in (("c11", cc, C_FLAGS, "c"), ("c++17", cxx, CXX_FLAGS, "cpp")):
        if not cmd:
            continue
        src = os.path.join(work, "init_macros.%s" % ext)
        with open(src, "w") as f:
            f.write("/* generated: every DIFFCL_*_INIT macro used from %s */\n%s"
                    "int main(void)\n{\n%s    return 0;\n}\n" % (lang, includes, decls))
        e = compile_tu(cmd, flags, src, src + ".o", include_dir)
        if e:
            errors.append("an _INIT macro does not initialise its type as %s (DIFFCL_X_INIT "
                          "must initialise the type diffcl_x, every field given, no designated "
                          "initialisers)\n%s" % (lang, e))
    print("%d headers, %d _INIT macros: %s" % (len(headers), len(macros),
                                               ", ".join(m for m, _, _ in macros)), flush=True)

    # 3. C++ program linking the library: _init() functions, extern "C" linkage
    if a.lib and cxx and not errors:
        declared = set()
        for h in headers:
            declared |= {n for n, _ in u.declared_api(h)}
        # Call only what the library exports: a declared but missing function is reported
        # by the exported-symbols test, not twice.
        out = u.run([a.nm, "-D", "--defined-only", a.lib]).stdout
        exported = {line.split()[-1].split("@")[0] for line in out.splitlines() if line.strip()}
        not_yet = sorted(t + "_init" for _, t, _ in macros
                         if t + "_init" in declared and t + "_init" not in exported)
        if not_yet:
            print("note: not exported yet, not called: " + ", ".join(not_yet))
        declared &= exported
        body = ['#include <cstdio>', '#include <cstring>', includes.rstrip("\n"),
                "int main()", "{", "    int bad = 0;",
                '    if (std::strcmp(diffcl_version_string(), DIFFCL_VERSION_STRING) != 0) {',
                '        std::printf("version %s != %s\\n", diffcl_version_string(),'
                ' DIFFCL_VERSION_STRING);',
                "        bad = 1;", "    }"]
        sources = ""
        for h in headers:
            with open(h, encoding="utf-8") as f:
                sources += u.strip_comments(f.read())
        n_init = 0
        for i, (m, t, _) in enumerate(macros):
            fn = t + "_init"
            body.append("    { %s a = %s; (void)a;" % (t, m))
            has_size = re.search(r"typedef\s+struct\s+%s\s*\{\s*size_t\s+struct_size\s*;" % t,
                                 sources)
            if fn in declared and not has_size:
                n_init += 1
                body.append("      %s b; %s(&b); (void)b;" % (t, fn))
            elif fn in declared:
                n_init += 1
                body.append("      %s b; std::memset(&b, 0xA5, sizeof b); %s(&b);" % (t, fn))
                body.append('      if (a.struct_size != sizeof(%s) || b.struct_size != '
                            'a.struct_size) { std::printf("%s: struct_size\\n"); bad = 1; }'
                            % (t, t))
            body.append("    }")
        body += ['    std::printf("%s\\n", bad ? "FAILED" : "ok");', "    return bad;", "}", ""]
        src = os.path.join(work, "link_cxx.cpp")
        with open(src, "w") as f:
            f.write("\n".join(body))
        exe = os.path.join(work, "link_cxx")
        lib = os.path.abspath(a.lib)
        san = ["-fsanitize=" + a.sanitize] if a.sanitize and a.sanitize != "none" else []
        p = u.run(cxx + CXX_FLAGS + san + ["-I", include_dir, src, "-o", exe, lib,
                                           "-Wl,-rpath," + os.path.dirname(lib)], check=False)
        if p.returncode != 0:
            errors.append("a C++ program calling the _init() functions does not link against "
                          "%s (missing extern \"C\" or an unimplemented function?)\n%s%s"
                          % (lib, p.stdout, p.stderr))
        else:
            p = u.run([exe], check=False)
            sys.stdout.write(p.stdout)
            if p.returncode != 0:
                errors.append("C++ _init() check failed (exit %d)\n%s%s"
                              % (p.returncode, p.stdout, p.stderr))
        print("C++ link check: %d _init() functions called" % n_init)

    if errors:
        print("\n\n".join(errors), file=sys.stderr)
        sys.exit(1)
    print("OK")


if __name__ == "__main__":
    main()
