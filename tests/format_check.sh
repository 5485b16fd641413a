#!/usr/bin/env bash
# Every C++ file of the tree is formatted by .clang-format (clang-format 14, Debian's). Skips,
# saying so, where clang-format is not installed.
set -u
cd "$1"
if ! command -v clang-format >/dev/null; then echo "clang-format not installed: format not checked"; exit 0; fi
files=$(git ls-files '*.cc' '*.h' '*.cu' '*.cuh' 2>/dev/null || find src include examples -name '*.cc' -o -name '*.h')
bad=$(for f in $files; do clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || echo "$f"; done)
if [ -n "$bad" ]; then
  echo "not formatted (run: clang-format -i FILE):"
  echo "$bad"
  exit 1
fi
echo "$(echo "$files" | wc -w) files formatted"
