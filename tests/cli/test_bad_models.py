"""CLI: every malformed model and bad --tokens value gives exit status 2, nothing on stdout and
exactly one line on stderr that names the problem. Usage: test_bad_models.py BINARY FIXTURES SHARED"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mpi_util import user_error  # noqa: E402

binary, fixtures = sys.argv[1], sys.argv[2]
failures = []


def expect_user_error(args, fragment, label):
    problem, _ = user_error([binary] + args, fragment)
    if problem:
        failures.append(f"{label}: {problem}")


cases = json.load(open(os.path.join(fixtures, "malformed", "cases.json")))
for name, fragment in cases.items():
    expect_user_error(["forward", "--model", os.path.join(fixtures, "malformed", name), "--tokens", "1,2"], fragment, name)

good = os.path.join(fixtures, "models", "gpt2-tiny")
expect_user_error(["forward", "--model", good, "--tokens", "1,64"], "outside the vocabulary", "token out of range")
expect_user_error(["forward", "--model", good, "--tokens", "1,-3"], "outside the vocabulary", "negative token")
expect_user_error(["forward", "--model", good, "--tokens", "1,x"], "not a comma-separated list", "non-integer token")
expect_user_error(["forward", "--model", good, "--tokens", ""], "empty token list", "empty tokens")
expect_user_error(["forward", "--model", good, "--tokens", ",".join(["1"] * 33)], "exceed the model's context", "too long")
expect_user_error(["forward", "--model", good], "usage", "missing --tokens")
expect_user_error(["forward", "--model", good, "--tokens", "1", "--bogus"], "unexpected argument", "unknown option")
expect_user_error(["frobnicate"], "unknown command", "unknown command")
expect_user_error(["forward", "--model", good, "--tokens", "1", "--threads", "0"], "--threads: expected an integer", "0 threads")
expect_user_error(["forward", "--model", good, "--tokens", "1", "--threads", "2x"], "not \"2x\"", "threads not a number")
expect_user_error(["forward", "--model", good, "--tokens", "1", "--threads"], "after it", "--threads without a value")

# The other commands' bad input: one line, exit 2.
import tempfile  # noqa: E402

with tempfile.TemporaryDirectory() as tmp:
    text = os.path.join(tmp, "notes.h5")
    open(text, "w").write("not hdf5\n")
    expect_user_error(["top", os.path.join(tmp, "missing.h5")], "no such file", "top: missing file")
    expect_user_error(["top", text], "not a patchsweep results file", "top: not HDF5")
    expect_user_error(["top", text, "--site", "zz"], "is not a site", "top: unknown site")
    expect_user_error(["top", text, "-k", "0"], "-k must be a positive integer", "top: bad -k")
    expect_user_error(["heads"], "usage", "heads: no model")
    expect_user_error(["heads", "--model", good, "--run", "40"], "needs 2 <= run", "heads: run too long")
    recipes = {
        "syntax": ('{"task": ', "JSON syntax error"),
        "unknown key": ('{"task": "induction", "modle": {}}', 'unknown key "modle"'),
        "unknown task": ('{"task": "sorting", "model": {"n_layer": 1, "d_model": 8, "n_head": 2, "d_mlp": 8, "n_ctx": 8},'
                         ' "steps": 1, "batch": 1}', 'task "sorting" is not known'),
        "bad sizes": ('{"task": "induction", "model": {"n_layer": 1, "d_model": 9, "n_head": 2, "d_mlp": 8, "n_ctx": 8},'
                      ' "steps": 1, "batch": 1}', "multiple of n_head"),
        "missing steps": ('{"task": "induction", "model": {"n_layer": 1, "d_model": 8, "n_head": 2, "d_mlp": 8, "n_ctx": 8},'
                          ' "batch": 1}', 'missing key "steps"'),
    }
    for label, (recipe, fragment) in recipes.items():
        path = os.path.join(tmp, "recipe.json")
        open(path, "w").write(recipe)
        expect_user_error(["train", path], fragment, f"train: {label}")

# And the good model works, printing its top tokens with their strings.
p = subprocess.run([binary, "forward", "--model", good, "--tokens", "5,17,3", "--top", "3"], capture_output=True, text=True)
if p.returncode != 0 or p.stdout.count("\n") != 5 or '"' not in p.stdout:
    failures.append(f"good model: status {p.returncode}, output {p.stdout!r} {p.stderr!r}")

print(f"{len(cases) + 21} checks, {len(failures)} failures")
for f in failures:
    print("FAIL", f)
sys.exit(1 if failures else 0)
