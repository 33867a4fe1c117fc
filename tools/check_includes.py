#!/usr/bin/env python3
"""Dependencies point down: checks the #include "patchsweep/..." graph of src/ and include/.

Each module (a folder of src/, and the headers it owns) may include its own headers and those of
the modules below it, never one above, and no chain of headers may include itself. The map is the
one in docs/design.md ("Modules"):

    core  <  model  <  job  <  patch  <  attrib  <  sweep  <  cli
                 \\-- train (core, model)  <  cli

Usage: tools/check_includes.py [REPO]   (exit 1, listing each offending include, on a violation)"""
import os
import re
import sys

root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), ".."))

# Which module owns each public header.
OWNER = {
    "core.h": "core",
    "kernels.h": "model", "model.h": "model", "safetensors.h": "model", "ops.h": "model",
    "transformer.h": "model", "sites.h": "model",
    "job.h": "job", "plan.h": "job",
    "patch.h": "patch",
    "attrib.h": "attrib", "bound.h": "attrib",
    "sweep.h": "sweep", "store.h": "sweep", "results.h": "sweep", "circuits.h": "sweep",
    "train.h": "train",
    "cli.h": "cli",
}
# What each module may include besides itself.
ALLOWED = {
    "core": set(),
    "model": {"core"},
    "job": {"core", "model"},
    "patch": {"core", "model", "job"},
    "attrib": {"core", "model", "job", "patch"},
    "sweep": {"core", "model", "job", "patch", "attrib"},
    "train": {"core", "model"},
    "cli": {"core", "model", "job", "patch", "attrib", "sweep", "train"},
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"patchsweep/([a-z_0-9]+\.h)"', re.M)


def includes(path):
    with open(path) as f:
        return INCLUDE.findall(f.read())


problems = []
graph = {}
for header in sorted(os.listdir(os.path.join(root, "include", "patchsweep"))):
    if header not in OWNER:
        problems.append(f"include/patchsweep/{header}: no module owns it (add it to tools/check_includes.py)")
        continue
    graph[header] = includes(os.path.join(root, "include", "patchsweep", header))
sources = []
for folder, _, files in os.walk(os.path.join(root, "src")):
    for name in files:
        if name.endswith((".c", ".h")):
            sources.append((os.path.relpath(os.path.join(folder, name), root), os.path.basename(folder)))
files = [(f"include/patchsweep/{h}", OWNER[h], inc) for h, inc in graph.items()]
files += [(path, module, includes(os.path.join(root, path))) for path, module in sorted(sources)]
for path, module, included in files:
    if module not in ALLOWED:
        problems.append(f"{path}: folder src/{module} is not a module (add it to tools/check_includes.py)")
        continue
    for header in included:
        other = OWNER.get(header)
        if other is None:
            problems.append(f"{path}: includes patchsweep/{header}, which does not exist")
        elif other != module and other not in ALLOWED[module]:
            problems.append(f"{path}: {module} includes {header} of {other}, a module above it")


def cycle_from(start):
    """A chain of headers from start back to itself, or None."""
    stack, seen = [(start, [start])], set()
    while stack:
        node, chain = stack.pop()
        for nxt in graph.get(node, []):
            if nxt == start:
                return chain + [nxt]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, chain + [nxt]))
    return None


for header in graph:
    chain = cycle_from(header)
    if chain:
        problems.append("include cycle: " + " -> ".join(chain))
        break
for p in problems:
    print("check_includes:", p)
print(f"check_includes: {len(files)} files, {sum(len(i) for _, _, i in files)} includes, {len(problems)} problems")
sys.exit(1 if problems else 0)
