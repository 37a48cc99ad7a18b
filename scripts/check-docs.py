#!/usr/bin/env python3
"""Documentation check of the public headers (meson test `public-header-docs`, suite docs).

Usage: scripts/check-docs.py [INCLUDE_DIR]      (default: include, next to this script's
                                                  parent; reads INCLUDE_DIR/diffcl/*.h)

The rule (docs/abi-policy.md, "Documentation"):

 1. Every header opens with a Doxygen file comment: `/** @file <name>.h` with a `@brief`.
 2. Every `DIFFCL_API` function is directly preceded by its own Doxygen block comment
    (`/** ... */`, nothing but white space between the comment and the declaration). A
    plain `/* */` comment, or one Doxygen comment shared by several declarations, fails.
 3. Thread safety: every header that declares functions says so in its file comment, in a
    paragraph starting `Thread safety:`. Functions that differ say so in their own comment.
 4. Errors: a function returning `diffcl_status` names what can go wrong, in its own
    comment (a `DIFFCL_ERR_...` code, or the words "error"/"Errors"/"fails"), or its header's
    file comment has an `Errors:` paragraph that covers the header's functions.
 5. Ownership: a function that hands out an object or memory (a pointer return type, or an
    out-parameter `T **` / `T ***`) says who owns and releases it, in its own comment (one of:
    own, owns, owned, borrowed, release, free, retain, static, "valid until", "valid while",
    "lives") or in an `Ownership:` paragraph of its header's file comment.
 6. Every public struct either begins with `size_t struct_size` (it may grow at the end) or
    its Doxygen comment says `Fixed layout` (it never changes within a major version:
    docs/abi-policy.md). A struct that may grow (struct_size, not `Fixed layout`) is
    embedded in another public struct only as its last member, and never as an array.
    scripts/check-abi.sh lets exactly those structs grow at the end.

Uses only Python's standard library. Exit 0 when every rule holds, 1 with a list otherwise.
"""
import os
import re
import sys

OWN_WORDS = re.compile(r"\b(own|owns|owned|owner|ownership|borrowed|release[sd]?|free[sd]?|"
                       r"_free\(\)|retain(s|ed)?|static|valid until|valid while|lives)\b",
                       re.I)
ERR_WORDS = re.compile(r"DIFFCL_ERR_|\berrors?\b|\bfails?\b", re.I)


def strip_comments_keep_layout(text):
    """Blank out comments (keeping offsets and line numbers)."""
    def blank(m):
        return re.sub(r"[^\n]", " ", m.group(0))
    text = re.sub(r"/\*.*?\*/", blank, text, flags=re.S)
    return re.sub(r"//[^\n]*", blank, text)


def line_of(text, pos):
    return text.count("\n", 0, pos) + 1


def doc_before(text, pos):
    """The `/** */` comment that ends right before @pos (only white space between), or None."""
    head = text[:pos].rstrip()
    if not head.endswith("*/"):
        return None
    start = head.rfind("/*")
    if start < 0 or not head.startswith("/**", start) or head.startswith("/**<", start):
        return None
    return head[start:]


def paragraph(file_doc, label):
    """Whether the file comment has a paragraph starting with @label (e.g. 'Errors:')."""
    pat = re.escape(label).replace(r"\ ", "[ -]")  # "Thread safety:" also as "Thread-safety:"
    return re.search(r"(^|\n)\s*\*?\s*(@par\s+)?" + pat, file_doc or "") is not None


def check_header(path, problems, sized, embedded):
    name = os.path.basename(path)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    code = strip_comments_keep_layout(text)

    # 1. file comment
    m = re.match(r"\s*(/\*\*.*?\*/)", text, flags=re.S)
    file_doc = m.group(1) if m else ""
    if not re.search(r"@file\s+%s\b" % re.escape(name), file_doc) or "@brief" not in file_doc:
        problems.append("%s:1: no Doxygen file comment (/** @file %s ... @brief ...)" % (name, name))

    n_funcs = 0
    for d in re.finditer(r"\bDIFFCL_API\b([^;{]*)[;{]", code):
        decl = " ".join(d.group(1).split())
        fm = re.match(r"(.*?)\b(diffcl_\w+)\s*\((.*)\)\s*$", decl)
        if not fm:
            continue  # not a function (a data symbol): the symbols test covers it
        n_funcs += 1
        ret, fname, params = fm.group(1).strip(), fm.group(2), fm.group(3)
        where = "%s:%d: %s" % (name, line_of(text, d.start()), fname)
        doc = doc_before(text, d.start())
        # 2. own comment
        if doc is None:
            problems.append(where + ": no Doxygen comment (/** ... */) right before it")
            continue
        # 4. errors
        if re.match(r"^diffcl_status$", ret) and not ERR_WORDS.search(doc) \
                and not paragraph(file_doc, "Errors:"):
            problems.append(where + ": returns diffcl_status but neither its comment nor the "
                            "file comment's 'Errors:' paragraph says which errors")
        # 5. ownership
        hands_out = "*" in ret or re.search(r"\*\s*\*", params) is not None
        if hands_out and not OWN_WORDS.search(doc) and not paragraph(file_doc, "Ownership:"):
            problems.append(where + ": hands out a pointer but neither its comment nor the "
                            "file comment's 'Ownership:' paragraph says who owns/releases it")

    # 3. thread safety
    if n_funcs and not paragraph(file_doc, "Thread safety:"):
        problems.append("%s: declares functions but its file comment has no 'Thread safety:' "
                        "paragraph" % name)

    # 6. structs: collect, judged once every header is read
    for s in re.finditer(r"\b(?:typedef\s+)?struct\s+(\w+)\s*\{", code):
        depth, i = 1, s.end()
        while depth and i < len(code):
            depth += {"{": 1, "}": -1}.get(code[i], 0)
            i += 1
        body = code[s.end():i - 1]
        members = [" ".join(x.split()) for x in body.split(";") if x.strip()]
        is_sized = bool(members) and re.match(r"^size_t struct_size$", members[0]) is not None
        doc = doc_before(text, s.start()) or ""
        fixed = re.search(r"\bFixed layout\b", doc) is not None
        if is_sized and not fixed:
            sized.add(s.group(1))
        elif not is_sized:
            if not fixed:
                problems.append("%s:%d: struct %s neither begins with size_t struct_size nor is "
                                "documented 'Fixed layout'" % (name, line_of(text, s.start()),
                                                               s.group(1)))
        for k, mem in enumerate(members):
            t = re.match(r"^(?:const\s+)?(?:struct\s+)?(diffcl_\w+)\s+\w+(\s*\[.*\])?$", mem)
            if t:
                embedded.append((name, s.group(1), t.group(1), k == len(members) - 1,
                                 bool(t.group(2))))
    return n_funcs


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    inc = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "include")
    d = os.path.join(inc, "diffcl")
    headers = sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".h"))
    if not headers:
        print("FAIL: no headers in " + d, file=sys.stderr)
        return 1
    problems, sized, embedded = [], set(), []
    n = sum(check_header(h, problems, sized, embedded) for h in headers)
    for hdr, outer, inner, last, array in embedded:
        if inner in sized and (not last or array):
            problems.append("%s: struct %s embeds the size-versioned %s %s" % (
                hdr, outer, inner, "as an array" if array else "before its last member"))
    if problems:
        print("\n".join(problems), file=sys.stderr)
        print("FAIL: %d documentation problems in %d headers (%d functions); the rule is in "
              "scripts/check-docs.py and docs/abi-policy.md" % (len(problems), len(headers), n),
              file=sys.stderr)
        return 1
    print("OK: %d headers, %d functions documented (ownership, errors, thread safety); "
          "%d size-versioned structs" % (len(headers), n, len(sized)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
