"""`patchsweep train` gives the committed weights of the embedded models bit for bit: the recipes
in models/*/recipe.json, trained again here (on whatever CPU this is, with whichever kernel
family it picks), write model.safetensors files identical to the committed ones, which were
trained on another machine. The three train at once on the machine's cores (about 4 minutes on two).

Skipped under the sanitizer build, where training takes many minutes; the release build runs it.
Usage: test_train_reproduces.py BINARY FIXTURES SHARED"""
import filecmp
import json
import os
import shutil
import subprocess
import sys
import tempfile

binary = sys.argv[1]
root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
if os.environ.get("PATCHSWEEP_SANITIZE") == "ON":
    print("skipped: the sanitizer build trains too slowly; the release build checks this")
    sys.exit(77)

failures = []
with tempfile.TemporaryDirectory() as tmp:
    runs = {}
    for name in ("induction-2l", "ioi-small", "facts-6l"):
        out = os.path.join(tmp, name)
        os.makedirs(out)
        recipe = json.load(open(os.path.join(root, "models", name, "recipe.json")))
        recipe["output"] = out
        path = os.path.join(tmp, name + ".json")
        json.dump(recipe, open(path, "w"))
        runs[name] = subprocess.Popen([binary, "train", path], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True)
    for name, proc in runs.items():
        _, err = proc.communicate(timeout=900)
        if proc.returncode != 0:
            failures.append(f"{name}: exit {proc.returncode}: {err[-500:]}")
            continue
        committed = os.path.join(root, "models", name, "model.safetensors")
        trained = os.path.join(tmp, name, "model.safetensors")
        same = filecmp.cmp(committed, trained, shallow=False)
        print(f"{name}: trained weights {'equal' if same else 'DIFFER FROM'} the committed ones, bit for bit")
        if not same:
            failures.append(f"{name}: the trained model.safetensors differs from the committed one")
            shutil.copy(trained, os.path.join(tempfile.gettempdir(), name + "-retrained.safetensors"))
        for other in ("tokenizer.json", "config.json"):  # what train writes beside the weights, committed as written
            if not filecmp.cmp(os.path.join(root, "models", name, other), os.path.join(tmp, name, other), shallow=False):
                failures.append(f"{name}: the trained {other} differs from the committed one")
print(f"{len(failures)} failures")
for f in failures:
    print("FAIL", f)
sys.exit(1 if failures else 0)
