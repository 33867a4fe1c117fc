"""Text prompts (clean_text, corrupt_text, answer_text, wrong_text) with a word-level tokenizer:
the same job written in words and in token ids computes the same thing, bit for bit, under the
same fingerprint (the canonical job is made of ids). Usage: test_text_prompts.py BINARY FIXTURES SHARED"""
import json
import os
import subprocess
import sys
import tempfile

import h5py

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mpi_util import compare  # noqa: E402

binary, fixtures = sys.argv[1], os.path.abspath(sys.argv[2])
root = os.path.normpath(os.path.join(fixtures, "..", ".."))
model = os.path.join(root, "models", "ioi-small")
vocab = json.load(open(os.path.join(model, "tokenizer.json")))["model"]["vocab"]
sentences = [("when Mary and John went to the store , John gave a drink to", "Mary", "John"),
             ("after Paul and Emma went to the garden , Emma gave a flower to", "Paul", "Emma")]
failures = []
with tempfile.TemporaryDirectory() as tmp:
    text_prompts, id_prompts = [], []
    for clean, answer, wrong in sentences:
        corrupt = clean.replace(f", {wrong} ", f", {answer} ")
        text_prompts.append({"clean_text": clean, "corrupt_text": corrupt, "answer_text": answer, "wrong_text": wrong})
        id_prompts.append({"clean": [vocab[w] for w in clean.split()], "corrupt": [vocab[w] for w in corrupt.split()],
                           "answer": vocab[answer], "wrong": vocab[wrong]})
    outputs = []
    for name, prompts in (("text", text_prompts), ("ids", id_prompts)):
        job = {"model": model, "prompts": prompts, "nodes": ["resid_pre", "z"], "estimates": ["atp"],
               "output": os.path.join(tmp, name + ".h5")}
        path = os.path.join(tmp, name + ".json")
        json.dump(job, open(path, "w"))
        p = subprocess.run([binary, "run", path, "--quiet"], capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            failures.append(f"{name} job: exit {p.returncode}: {p.stderr}")
        outputs.append(job["output"])
    if not failures:
        failures += [f"text vs ids: {d}" for d in compare(*outputs)]
        with h5py.File(outputs[0], "r") as f:
            tokens = f["prompts/base_tokens"][0].tolist()
            if tokens[:2] != [vocab["when"], vocab["Mary"]]:
                failures.append(f"base tokens {tokens[:4]} are not the words' ids")
print(f"{len(failures)} failures")
for f in failures:
    print("FAIL", f)
sys.exit(1 if failures else 0)
