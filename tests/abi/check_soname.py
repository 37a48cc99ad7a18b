#!/usr/bin/env python3
"""Version / soname test.

- readelf -d: SONAME is libdiffcl.so.<soversion> (the ABI major, from meson.build);
- the build folder has the libdiffcl.so -> .so.<soversion> -> .so.<version> links;
- the version script's nodes (lib/libdiffcl.map) are defined in the library, DIFFCL_0.1
  among them, and every exported symbol carries one of them as its default version;
- include/diffcl/version.h agrees with meson's project version, and the soname major
  with the project's major version.

usage: check_soname.py READELF LIBDIFFCL_SO MAP_FILE VERSION_H PROJECT_VERSION SOVERSION
"""
import os
import re
import sys

import abi_util as u

FIRST_NODE = "DIFFCL_0.1"


def main():
    if len(sys.argv) != 7:
        u.fail(__doc__)
    readelf, lib, map_file, version_h, project_version, soversion = sys.argv[1:]
    problems = []

    # SONAME
    dyn = u.run([readelf, "-d", "-W", lib]).stdout
    m = re.search(r"\(SONAME\)\s+Library soname: \[([^\]]+)\]", dyn)
    want_soname = "libdiffcl.so." + soversion
    if not m:
        problems.append("%s has no SONAME" % lib)
    elif m.group(1) != want_soname:
        problems.append("SONAME is %s, expected %s" % (m.group(1), want_soname))
    else:
        print("SONAME %s" % m.group(1))

    # symlink chain next to the library
    d = os.path.dirname(os.path.abspath(lib))
    real = "libdiffcl.so." + project_version
    for link, target in (("libdiffcl.so", want_soname), (want_soname, real)):
        p = os.path.join(d, link)
        if not os.path.islink(p) or os.readlink(p) != target:
            problems.append("%s should be a symlink to %s" % (p, target))
    if not os.path.isfile(os.path.join(d, real)):
        problems.append("%s missing" % os.path.join(d, real))

    # version nodes
    with open(map_file, encoding="utf-8") as f:
        map_text = u.strip_comments(f.read())
    nodes = re.findall(r"^\s*(DIFFCL_[0-9]+\.[0-9]+)\s*\{", map_text, flags=re.M)
    if FIRST_NODE not in nodes:
        problems.append("%s does not define the node %s" % (map_file, FIRST_NODE))
    verdef = u.run([readelf, "-V", "-W", lib]).stdout
    defined = set(re.findall(r"Name:\s*(DIFFCL_[0-9.]+)", verdef))
    for n in nodes:
        if n not in defined:
            problems.append("version node %s (from %s) not defined in %s" % (n, map_file, lib))
    syms = u.run([readelf, "--dyn-syms", "-W", lib]).stdout
    exported, by_node, unversioned = 0, {}, []
    for line in syms.splitlines():
        f = line.split()
        # Num: Value Size Type Bind Vis Ndx Name
        if len(f) < 8 or not f[0].rstrip(":").isdigit():
            continue
        typ, bind, ndx, name = f[3], f[4], f[6], f[7]
        if ndx in ("UND", "ABS") or typ not in ("FUNC", "OBJECT", "IFUNC", "TLS") or bind == "LOCAL":
            continue
        exported += 1
        base, _, ver = name.partition("@")
        ver = ver.lstrip("@")
        if ver not in nodes:
            unversioned.append("%s (version '%s')" % (base, ver))
        else:
            by_node[ver] = by_node.get(ver, 0) + 1
    if exported == 0:
        problems.append("%s exports no symbols" % lib)
    if unversioned:
        problems.append("exported symbols without a node of %s:\n  %s"
                        % (map_file, "\n  ".join(unversioned)))
    if FIRST_NODE not in by_node:
        problems.append("no exported symbol carries %s" % FIRST_NODE)
    print("%d exported symbols by node: %s" % (exported, by_node))

    # version.h vs meson
    with open(version_h, encoding="utf-8") as f:
        vh = f.read()
    parts = {}
    for k in ("MAJOR", "MINOR", "PATCH"):
        mm = re.search(r"#\s*define\s+DIFFCL_VERSION_%s\s+(\d+)" % k, vh)
        parts[k] = mm.group(1) if mm else None
    vs = re.search(r'#\s*define\s+DIFFCL_VERSION_STRING\s+"([^"]*)"', vh)
    header_version = "%s.%s.%s" % (parts["MAJOR"], parts["MINOR"], parts["PATCH"])
    if header_version != project_version:
        problems.append("version.h says %s, meson.build says %s" % (header_version, project_version))
    if not vs or vs.group(1) != project_version:
        problems.append("DIFFCL_VERSION_STRING is %s, meson.build says %s"
                        % (vs.group(1) if vs else "missing", project_version))
    if parts["MAJOR"] != soversion:
        problems.append("soversion %s differs from the major version %s (soname policy: "
                        "libdiffcl.so.<major>)" % (soversion, parts["MAJOR"]))

    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)
    print("OK")


if __name__ == "__main__":
    main()
