#!/bin/sh
# Groups what a long fuzzing run left (crash-*, leak-*, timeout-*, oom-* in DIR) by what went
# wrong and where: replays each input once and prints, per distinct signature (the sanitizer's
# report kind and the first frame in patchsweep's src/), how many inputs hit it and the smallest.
# Usage: tools/fuzz_triage.sh HARNESS DIR      (docs/fuzzing.md, "Running them long")
set -u
bin=$1 dir=$2
root=$(cd "$(dirname "$0")/.." && pwd)
export LSAN_OPTIONS=suppressions=$root/tests/lsan.supp:print_suppressions=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
for f in "$dir"/crash-* "$dir"/leak-* "$dir"/timeout-* "$dir"/oom-*; do
    [ -f "$f" ] || continue
    out=$("$bin" -timeout=10 -rss_limit_mb=4096 -malloc_limit_mb=2048 "$f" 2>&1)
    kind=$(printf '%s\n' "$out" | grep -Eo "runtime error: .*|ERROR: [A-Za-z]+: [a-z -]+" | head -n 1 |
        sed -E 's/\binf\b|-?[0-9][0-9.e+]*/N/g; s/0xN[0-9a-f]*/ADDR/g')
    where=$(printf '%s\n' "$out" | grep -Eo "(src|include)/[^ ]+:[0-9]+" | grep -v "^src/core/alloc.c" | head -n 1)
    printf '%s\t%s\t%s\t%s\n' "$(wc -c <"$f")" "${kind:-no report}" "${where:-?}" "$f"
done | sort -t "$(printf '\t')" -k2,3 -k1n | awk -F '\t' '
    { key = $2 " @ " $3; n[key]++; if (!(key in first)) { first[key] = $4; size[key] = $1 } }
    END { for (k in n) printf "%5d  %s\n       smallest (%d bytes): %s\n", n[k], k, size[k], first[k] }'
