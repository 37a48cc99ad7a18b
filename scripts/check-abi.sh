#!/usr/bin/env bash
# ABI guard: compare a build's libdiffcl.so with the newest recorded release baseline.
#
#   ./scripts/check-abi.sh [BUILD_DIR]            # check (default BUILD_DIR: $DIFFCL_BUILD_DIR or build)
#   ./scripts/check-abi.sh --update [BUILD_DIR]   # at a release: record the baseline of this version
#
# The baseline of release X.Y.Z is abi/libdiffcl-X.Y.Z.abi (libabigail `abidw` XML of a -g
# build, public types only) plus a copy of its headers in abi/X.Y.Z/include. The check
#   1. runs `abidiff` between the newest baseline and BUILD_DIR/lib/libdiffcl.so (which must
#      carry DWARF: the default debugoptimized build does), ignoring added symbols, harmless
#      changes (libabigail's defaults: const added to a pointee, new enumerators, renamed
#      parameters) and fields appended to structs that begin with `size_t struct_size`
#      (generated suppressions) plus the hand-written suppressions in abi/*.abignore;
#   2. checks the symbol versions: every baseline symbol keeps its version node, and every
#      symbol added since carries a node the baseline does not have (lib/libdiffcl.map);
#   3. builds abi/compat/caller-0.1.0.c as a 0.1.0 program (frozen headers, linked against a
#      stub exporting the 0.1.0 symbol versions) and runs it against the build's library.
# Any reported change fails the check, unless the soname major was bumped (the build's
# SONAME differs from the baseline's) and the newest CHANGELOG.md section marks the change
# **Breaking** and names the new soname. Policy: docs/abi-policy.md.
#
# Exit status: 0 compatible (or an announced major bump), 1 incompatible, 2 usage or tool error.
# Needs abigail-tools (abidw, abidiff), readelf and a C compiler (cc, or $CC).
set -euo pipefail
export LC_ALL=C
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"

die() { printf 'check-abi: %s\n' "$*" >&2; exit 2; }
say() { printf 'check-abi: %s\n' "$*"; }

update=0
if [[ "${1:-}" == "--update" ]]; then
    update=1
    shift
fi
if [[ "${1:-}" == -* ]]; then
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit 2
fi
build="${1:-${DIFFCL_BUILD_DIR:-build}}"

for tool in abidw abidiff readelf; do
    command -v "$tool" >/dev/null 2>&1 ||
        die "$tool not found (Debian: apt-get install abigail-tools binutils; scripts/setup.sh does)"
done
lib="$build/lib/libdiffcl.so"
[[ -e "$lib" ]] || die "$lib not found: build first (meson setup $build && meson compile -C $build)"
lib="$(readlink -f "$lib")"
if ! readelf -S -W "$lib" | grep -q '\.debug_info'; then
    die "$lib has no DWARF (.debug_info): the ABI check needs a -g build (buildtype debug or debugoptimized)"
fi

version="$(sed -n 's/^#define DIFFCL_VERSION_STRING "\(.*\)"$/\1/p' include/diffcl/version.h)"
[[ -n "$version" ]] || die "no DIFFCL_VERSION_STRING in include/diffcl/version.h"
soname="$(readelf -d -W "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')"

abidw_flags=(--no-corpus-path --short-locs --no-comp-dir-path --no-elf-needed --type-id-style hash
             --drop-private-types)

# ---------------------------------------------------------------- --update (release) ----
if [[ $update -eq 1 ]]; then
    out="abi/libdiffcl-$version.abi"
    abidw "${abidw_flags[@]}" --headers-dir include/diffcl --out-file "$out" "$lib"
    rm -rf "abi/$version/include"
    mkdir -p "abi/$version/include/diffcl"
    cp include/diffcl/*.h "abi/$version/include/diffcl/"
    say "recorded $out ($(grep -c '<elf-symbol ' "$out") symbols, soname $soname) and abi/$version/include"
    say "next: list the new node's symbols by name in lib/libdiffcl.map and open the next node (docs/abi-policy.md)"
    exit 0
fi

# ---------------------------------------------------------------- the newest baseline ----
baseline="$(find abi -maxdepth 1 -name 'libdiffcl-*.abi' | sed 's|.*/libdiffcl-\(.*\)\.abi$|\1|' |
            sort -V | tail -n 1)"
[[ -n "$baseline" ]] || die "no baseline abi/libdiffcl-*.abi"
base_xml="abi/libdiffcl-$baseline.abi"
base_soname="$(sed -n "1s/.*soname='\([^']*\)'.*/\1/p" "$base_xml")"
say "library $lib ($version, soname $soname) against baseline $baseline (soname $base_soname)"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/diffcl-check-abi-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
problems=0

# ------------------------------------------------------------------ 1. abidiff ----
# Structs versioned by size may grow at the end: generate one suppression per struct whose
# first member is `size_t struct_size` in the current public headers, except those whose
# Doxygen comment says "Fixed layout" (embedded in another struct before its last member,
# e.g. diffcl_conv_geometry in diffcl_conv_options: growing them would move what follows).
# scripts/check-docs.py checks that every growable struct is embedded only at the end.
supp="$tmp/struct-size.abignore"
python3 - include/diffcl > "$supp" <<'EOF'
import os, re, sys
d = os.path.join(sys.argv[1])
names = set()
for f in sorted(os.listdir(d)):
    if f.endswith(".h"):
        raw = open(os.path.join(d, f), encoding="utf-8").read()
        # keep Doxygen comments (to see "Fixed layout"), drop the others
        text = re.sub(r"/\*(?!\*).*?\*/", "", raw, flags=re.S)
        for m in re.finditer(r"(/\*\*(?:(?!\*/).)*\*/\s*)?typedef\s+struct\s+(\w+)\s*\{"
                             r"(?:\s*/\*\*<(?:(?!\*/).)*\*/)?\s*size_t\s+struct_size\s*;", text, flags=re.S):
            if not (m.group(1) and "Fixed layout" in m.group(1)):
                names.add(m.group(2))
for n in sorted(names):
    print("[suppress_type]\n  label = %s grows at the end (struct_size)\n  type_kind = struct\n"
          "  name = %s\n  has_data_member_inserted_at = end\n" % (n, n))
EOF
supp_args=(--suppressions "$supp")
for f in abi/*.abignore; do
    [[ -e "$f" ]] && supp_args+=(--suppressions "$f")
done
say "$(grep -c '^\[suppress_type\]' "$supp") size-versioned structs may grow at the end"

set +e
abidiff --no-added-syms "${supp_args[@]}" --headers-dir2 include/diffcl --drop-private-types \
    "$base_xml" "$lib" > "$tmp/abidiff.txt" 2>&1
rc=$?
set -e
if (( rc & 3 )); then
    cat "$tmp/abidiff.txt" >&2
    die "abidiff failed (exit $rc)"
fi
if (( rc & 12 )); then
    say "abidiff reports changes to the $baseline ABI (exit $rc: $(( rc & 8 ? 1 : 0 )) = incompatible for certain):"
    sed 's/^/    /' "$tmp/abidiff.txt"
    problems=1
else
    say "abidiff: no change to the $baseline interfaces"
fi

# ------------------------------------------------------------- 2. version nodes ----
grep -o "<elf-symbol name='[^']*' version='[^']*'" "$base_xml" |
    sed "s/<elf-symbol name='\([^']*\)' version='\([^']*\)'/\1 \2/" | sort > "$tmp/base.syms"
readelf --dyn-syms -W "$lib" |
    awk '$7 != "UND" && $5 != "LOCAL" && ($4 == "FUNC" || $4 == "OBJECT") && $8 ~ /@/ { print $8 }' |
    sed 's/@@*/ /' | sort > "$tmp/cur.syms"
cut -d' ' -f2 "$tmp/base.syms" | sort -u > "$tmp/base.nodes"
# A baseline (symbol, node) pair must still be exported: old programs ask for exactly it.
# (A symbol may gain a newer default version next to it, e.g. a grown struct's _init.)
gone="$(comm -23 "$tmp/base.syms" "$tmp/cur.syms" | awk '{ print "    " $1 "@" $2 }')"
if [[ -n "$gone" ]]; then
    say "symbols of $baseline no longer exported under their version node (old programs would not load):"
    printf '%s\n' "$gone"
    problems=1
fi
added="$(comm -13 "$tmp/base.syms" "$tmp/cur.syms")"
if [[ -n "$added" ]]; then
    say "$(printf '%s\n' "$added" | wc -l) symbol versions added since $baseline:"
    printf '%s\n' "$added" | awk '{ printf "    %s@@%s\n", $1, $2 }'
    in_old="$(printf '%s\n' "$added" | awk 'NR == FNR { old[$1] = 1; next } ($2 in old) { print "    " $1 "@" $2 }' \
              "$tmp/base.nodes" -)"
    if [[ -n "$in_old" ]]; then
        say "added symbols in a version node of $baseline (they need the next release's node, lib/libdiffcl.map):"
        printf '%s\n' "$in_old"
        problems=1
    fi
fi

# ------------------------------------------------------ 3. a 0.1.0 program runs ----
# Built against the frozen headers and linked against a stub of the 0.1.0 library, so it
# binds to the 0.1.0 symbol versions as a program of that time does (abi/compat/run-caller.sh).
if [[ "$soname" == "libdiffcl.so.0" ]]; then
    if sh abi/compat/run-caller.sh "$(dirname "$lib")" "${CC:-cc}" > "$tmp/run.txt" 2>&1; then
        say "a program built against 0.1.0 runs against this library"
    else
        say "a program built against 0.1.0 fails with this library:"
        sed 's/^/    /' "$tmp/run.txt"
        problems=1
    fi
fi

if [[ $problems -eq 0 ]]; then
    say "OK: compatible with $baseline"
    exit 0
fi

# ----------------------------------------------------- an announced major bump? ----
if [[ "$soname" != "$base_soname" ]]; then
    # The newest section of CHANGELOG.md: from the first "## [" heading to the next one.
    section="$(awk '/^## \[/ { n++ } n == 1' CHANGELOG.md)"
    if grep -qF '**Breaking**' <<<"$section" && grep -qF "$soname" <<<"$section"; then
        say "OK: incompatible with $baseline, but the soname is now $soname (was $base_soname)"
        say "and CHANGELOG.md announces it; record the new baseline at the release (--update)"
        exit 0
    fi
    say "the soname changed to $soname, but the newest CHANGELOG.md section does not mark the"
    say "change **Breaking** and name $soname"
    exit 1
fi
say "FAIL: incompatible with $baseline under the same soname $soname. Either keep the old"
say "interfaces (append fields to size-versioned structs, add new functions instead of changing"
say "old ones), or bump the major version and soname (meson.build, version.h) and mark the"
say "change **Breaking** with the new soname in CHANGELOG.md (docs/abi-policy.md)."
exit 1
