#!/usr/bin/env bash
# The files of lib/, include/ and tools/ must be as clang-format-14 writes them (.clang-format).
# CI runs this; fix a failure with:  clang-format-14 -i FILE...
#
#   scripts/check-format.sh            # exit 1 and the list of files when one differs
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
fmt="${CLANG_FORMAT:-clang-format-14}"
command -v "$fmt" >/dev/null || { echo "check-format: $fmt is not installed" >&2; exit 2; }
bad=0
while IFS= read -r f; do
    if ! "$fmt" --style=file --dry-run -Werror "$f" >/dev/null 2>&1; then
        echo "check-format: $f is not formatted (clang-format-14 -i $f)"
        bad=1
    fi
done < <(git ls-files 'lib/*.c' 'lib/*.h' 'lib/*.inc' 'include/*.h' 'tools/*.c' 'tools/*.h')
[[ $bad -eq 0 ]] && echo "check-format: lib/, include/ and tools/ are formatted"
exit $bad
