#!/usr/bin/env bash
# Formats our C++ sources with clang-format and the repository's .clang-format.
#   scripts/format.sh            rewrites every *.h, *.cpp, *.inc under src/ tests/ bench/ in place
#   scripts/format.sh --check    changes nothing; lists the files that differ and exits 1 if any do
# Set CLANG_FORMAT to use another binary (the rules are checked against Debian 12's clang-format 14).
set -euo pipefail
cd "$(dirname "$0")/.."
check=0
case "${1:-}" in
  --check) check=1 ;;
  "") ;;
  -h|--help) sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "usage: scripts/format.sh [--check]" >&2; exit 2 ;;
esac
cf="${CLANG_FORMAT:-clang-format}"
if ! command -v "$cf" >/dev/null; then
  echo "format.sh: $cf not found (scripts/install-deps.sh installs clang-format)" >&2
  exit 2
fi
# A broken .clang-format must not pass for "every file differs".
"$cf" --style=file --dump-config >/dev/null
mapfile -d '' files < <(find src tests bench -type f \( -name '*.h' -o -name '*.cpp' -o -name '*.inc' \) -print0 | sort -z)
if [ "$check" = 0 ]; then
  printf '%s\0' "${files[@]}" | xargs -0 -n 50 "$cf" -i --style=file
  exit 0
fi
differ=()
for f in "${files[@]}"; do
  "$cf" --dry-run -Werror --style=file "$f" >/dev/null 2>&1 || differ+=("$f")
done
if [ ${#differ[@]} -gt 0 ]; then
  echo "format.sh: ${#differ[@]} file(s) differ from .clang-format (run scripts/format.sh):" >&2
  printf '  %s\n' "${differ[@]}" >&2
  exit 1
fi
echo "format.sh: ${#files[@]} files formatted as .clang-format says"
