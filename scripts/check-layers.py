#!/usr/bin/env python3
"""Check that the library's layers use only earlier layers (docs/architecture.md).

    check-layers.py SOURCE_ROOT [INTERNAL_ARCHIVE]

The layer order and the public headers of each layer are read from the table in
docs/architecture.md, so the document and the check cannot drift apart. Three checks:

1. folders: the layers of the table are exactly the folders of lib/ (each with a meson.build);
2. includes: a file of lib/L/ includes internal headers ("M/...") and public headers
   (<diffcl/h.h>) of L or earlier layers only, and so does each public header of L;
3. symbols (when the internal static archive is given): every undefined symbol of an object of
   layer L that another object of the archive defines is defined in L or an earlier layer.
   This catches a call through a declaration the include check cannot see.

Prints every violation; exit status 1 if there is one.
"""
import os
import re
import subprocess
import sys


def read_layers(root):
    """[(folder, [public headers])] in order, from the table of docs/architecture.md."""
    layers = []
    with open(os.path.join(root, "docs", "architecture.md"), encoding="utf-8") as f:
        for line in f:
            m = re.match(r"^\|\s*(\d+)\s*\|\s*`(\w+)`\s*\|([^|]*)\|", line)
            if m:
                headers = re.findall(r"`([\w.]+\.h)`", m.group(3))
                layers.append((m.group(2), headers))
    return layers


def check_folders(root, layers):
    lib = os.path.join(root, "lib")
    folders = sorted(d for d in os.listdir(lib) if os.path.isfile(os.path.join(lib, d, "meson.build")))
    named = sorted(name for name, _ in layers)
    errors = []
    for d in folders:
        if d not in named:
            errors.append(f"lib/{d}/ is not a layer of docs/architecture.md")
    for d in named:
        if d not in folders:
            errors.append(f"docs/architecture.md names layer {d}, but lib/{d}/ does not exist")
    return errors


INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]')


def check_includes(root, layers):
    rank = {name: i for i, (name, _) in enumerate(layers)}
    header_layer = {}
    for name, headers in layers:
        for h in headers:
            header_layer[h] = name
    errors = []
    for name, _ in layers:
        folder = os.path.join(root, "lib", name)
        for fn in sorted(os.listdir(folder)):
            if not fn.endswith((".c", ".h", ".inc")):
                continue
            with open(os.path.join(folder, fn), encoding="utf-8") as f:
                for no, line in enumerate(f, 1):
                    m = INCLUDE.match(line)
                    if not m:
                        continue
                    inc = m.group(1)
                    parts = inc.split("/")
                    target = None
                    if parts[0] == "diffcl" and len(parts) == 2:
                        target = header_layer.get(parts[1])
                        if target is None and parts[1] not in ("diffcl.h", "diffcl_config.h"):
                            errors.append(f"lib/{name}/{fn}:{no}: public header {inc} is in no layer of the table")
                        if parts[1] == "diffcl.h":
                            errors.append(f"lib/{name}/{fn}:{no}: the umbrella header includes every layer")
                    elif len(parts) == 2 and parts[0] in rank:
                        target = parts[0]
                    if target is not None and rank[target] > rank[name]:
                        errors.append(f"lib/{name}/{fn}:{no}: layer {name} includes {inc} of the later layer {target}")
    # public headers: a layer's header includes the headers of its own and earlier layers only
    inc_dir = os.path.join(root, "include", "diffcl")
    for h, name in sorted(header_layer.items()):
        path = os.path.join(inc_dir, h)
        if not os.path.isfile(path):
            errors.append(f"docs/architecture.md lists include/diffcl/{h}, which does not exist")
            continue
        with open(path, encoding="utf-8") as f:
            for no, line in enumerate(f, 1):
                m = INCLUDE.match(line)
                if not m or not m.group(1).startswith("diffcl/"):
                    continue
                target = header_layer.get(m.group(1).split("/", 1)[1])
                if target is not None and rank[target] > rank[name]:
                    errors.append(f"include/diffcl/{h}:{no}: a {name} header includes {m.group(1)} of the later layer {target}")
    return errors


def object_layer(member, rank):
    """'layer_module.c.o' -> 'layer' (meson names archive members after their path)."""
    head = os.path.basename(member).split("_", 1)[0]
    return head if head in rank else None


def check_symbols(archive, layers):
    rank = {name: i for i, (name, _) in enumerate(layers)}
    out = subprocess.run(["nm", "-A", archive], check=True, capture_output=True, text=True).stdout
    defined, used = {}, []
    for line in out.splitlines():
        # "archive:member:    address T name" or "archive:member:                 U name"
        m = re.match(r"^[^:]+:([^:]+):\s*(?:[0-9a-fA-F]+\s+)?([A-Za-z])\s+(\S+)$", line)
        if not m:
            continue
        member, kind, sym = m.groups()
        layer = object_layer(member, rank)
        if layer is None:
            continue
        if kind == "U":
            used.append((layer, member, sym))
        elif kind in "TDRBVWC":
            defined.setdefault(sym, layer)
    errors = []
    for layer, member, sym in used:
        target = defined.get(sym)
        if target is not None and rank[target] > rank[layer]:
            errors.append(f"{member} (layer {layer}) uses {sym} of the later layer {target}")
    return errors


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    root = sys.argv[1]
    layers = read_layers(root)
    if len(layers) < 2:
        print("check-layers: no layer table in docs/architecture.md", file=sys.stderr)
        return 1
    errors = check_folders(root, layers) + check_includes(root, layers)
    if len(sys.argv) == 3:
        errors += check_symbols(sys.argv[2], layers)
    for e in errors:
        print(e)
    order = " < ".join(name for name, _ in layers)
    print(f"check-layers: {len(errors)} violation(s) of the order {order}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
