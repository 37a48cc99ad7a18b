#!/bin/sh
# Run abi/compat/caller-0.1.0.c as a program built in the 0.1.0 era would run against the
# current library.
#
#   abi/compat/run-caller.sh LIBDIR [CC [SANITIZE]]
#
# The caller is compiled against the frozen headers (abi/0.1.0/include) and linked against
# a stub libdiffcl.so.0 that exports exactly the 0.1.0 symbols under their 0.1.0 version
# nodes (read from abi/libdiffcl-0.1.0.abi). The binary therefore asks for name@DIFFCL_0.1,
# as one linked against the real 0.1.0 library does, and not for a newer default version
# of a symbol. It then runs with LIBDIR (the library under test) first on the loader path.
# CC defaults to $CC or cc; SANITIZE (e.g. "address,undefined", or "none") instruments the
# caller like the library so it can load a sanitized build.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
abi="$(cd "$here/.." && pwd)"
libdir="${1:?usage: run-caller.sh LIBDIR [CC [SANITIZE]]}"
cc="${2:-${CC:-cc}}"
sanitize="${3:-none}"
xml="$abi/libdiffcl-0.1.0.abi"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/diffcl-abi-caller-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT INT TERM

# The stub: one empty function per 0.1.0 symbol, version script grouped by node.
grep -o "<elf-symbol name='[^']*' version='[^']*'" "$xml" |
    sed "s/<elf-symbol name='\([^']*\)' version='\([^']*\)'/\1 \2/" > "$tmp/syms"
awk '{ printf "void %s(void);\nvoid %s(void) {}\n", $1, $1 }' "$tmp/syms" > "$tmp/stub.c"
awk '{ nodes[$2] = nodes[$2] "    " $1 ";\n"; if (!($2 in seen)) { seen[$2] = 1; order[++n] = $2 } }
     END { prev = ""
           for (i = 1; i <= n; i++) {
               printf "%s {\n  global:\n%s%s}%s;\n", order[i], nodes[order[i]],
                      (i == 1 ? "  local:\n    *;\n" : ""), (prev == "" ? "" : " " prev)
               prev = order[i] } }' "$tmp/syms" > "$tmp/stub.map"
mkdir "$tmp/stub"
# shellcheck disable=SC2086  # CC may carry arguments
$cc -shared -fPIC -o "$tmp/stub/libdiffcl.so" "$tmp/stub.c" \
    -Wl,--version-script="$tmp/stub.map" -Wl,-soname,libdiffcl.so.0

san=""
if [ "$sanitize" != "none" ] && [ -n "$sanitize" ]; then
    san="-fsanitize=$sanitize"
fi
# shellcheck disable=SC2086
$cc -std=c11 -Wall -Wextra -Werror -pedantic $san -I "$abi/0.1.0/include" \
    "$here/caller-0.1.0.c" -o "$tmp/caller" -L "$tmp/stub" -ldiffcl -lm

LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$tmp/caller"
