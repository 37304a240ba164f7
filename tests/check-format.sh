#!/bin/sh
# Fails when a C source or header of ours differs from what the committed
# .clang-format makes of it; skips (77) without clang-format.
set -eu
cd "$1"
command -v clang-format >/dev/null 2>&1 || { echo "clang-format missing"; exit 77; }
if git rev-parse --git-dir >/dev/null 2>&1; then
	files=$(git ls-files -co --exclude-standard '*.c' '*.h')
else
	files=$(find . -path './build*' -prune -o \( -name '*.c' -o -name '*.h' \) -print)
fi
[ -n "$files" ] || exit 0
# shellcheck disable=SC2086
clang-format --dry-run -Werror $files
