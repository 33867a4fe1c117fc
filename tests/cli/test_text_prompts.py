"""Text prompts (clean_text, corrupt_text, answer_text, wrong_text): the same job written in text
and in token ids computes the same thing, bit for bit, under the same fingerprint (the canonical
job is made of ids), with the embedded models' word-level tokenizer (whose template puts <bos>
first: "add_bos" defaults to it) and with a SentencePiece-style BPE tokenizer on stories260K.
A prompt of ids without the BOS the tokenizer puts first is warned about by plan and run; an
answer text of several tokens is refused naming them. Usage: test_text_prompts.py BINARY FIXTURES SHARED"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import h5py

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mpi_util import compare, user_error  # noqa: E402

binary, fixtures = sys.argv[1], os.path.abspath(sys.argv[2])
root = os.path.normpath(os.path.join(fixtures, "..", ".."))
model = os.path.join(root, "models", "ioi-small")
vocab = json.load(open(os.path.join(model, "tokenizer.json")))["model"]["vocab"]
sentences = [("when Mary and John went to the store , John gave a drink to", "Mary", "John"),
             ("after Paul and Emma went to the garden , Emma gave a flower to", "Paul", "Emma")]
failures = []


def run_job(tmp, model, name, prompts):
    """Runs prompts on a model (z and resid_pre, with AtP); returns the results file's path."""
    job = {"model": model, "prompts": prompts, "nodes": ["resid_pre", "z"], "estimates": ["atp"],
           "output": os.path.join(tmp, name + ".h5")}
    path = os.path.join(tmp, name + ".json")
    json.dump(job, open(path, "w"))
    p = subprocess.run([binary, "run", path, "--quiet"], capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        failures.append(f"{name} job: exit {p.returncode}: {p.stderr}")
    return job["output"]


with tempfile.TemporaryDirectory() as tmp:
    text_prompts, id_prompts = [], []
    for clean, answer, wrong in sentences:
        corrupt = clean.replace(f", {wrong} ", f", {answer} ")
        text_prompts.append({"clean_text": clean, "corrupt_text": corrupt, "answer_text": answer, "wrong_text": wrong})
        bos = [vocab["<bos>"]]  # the template's, added by default
        id_prompts.append({"clean": bos + [vocab[w] for w in clean.split()], "corrupt": bos + [vocab[w] for w in corrupt.split()],
                           "answer": vocab[answer], "wrong": vocab[wrong]})
    outputs = [run_job(tmp, model, name, prompts) for name, prompts in (("text", text_prompts), ("ids", id_prompts))]
    if not failures:
        failures += [f"text vs ids: {d}" for d in compare(*outputs)]
        with h5py.File(outputs[0], "r") as f:
            tokens = f["prompts/base_tokens"][0].tolist()
            if tokens[:3] != [vocab["<bos>"], vocab["when"], vocab["Mary"]]:
                failures.append(f"base tokens {tokens[:4]} are not <bos> and the words' ids")

    def plan(job, name):
        path = os.path.join(tmp, name + ".json")
        json.dump(job, open(path, "w"))
        return subprocess.run([binary, "plan", path], capture_output=True, text=True, timeout=120)

    # "add_bos": false gives the words alone; plan then warns that the prompts lack the BOS.
    job = {"model": model, "prompts": text_prompts, "nodes": ["z"], "add_bos": False, "output": os.path.join(tmp, "x.h5")}
    p = plan(job, "no-bos")
    if p.returncode != 0 or "warning    2 of 2 prompts (the first: prompts[0]) do not begin with the BOS token \"<bos>\" (id 0)" \
            not in p.stdout:
        failures.append(f"plan without BOS: no warning: {p.returncode} {p.stdout[-600:]} {p.stderr}")
    p = plan(dict(job, add_bos=True), "bos")
    if p.returncode != 0 or "BOS token" in p.stdout:
        failures.append(f"plan with BOS: {p.returncode} {p.stdout[-600:]} {p.stderr}")
    # A text that already begins with <bos> does not get a second one.
    doubled = [dict(t, clean_text="<bos> " + t["clean_text"], corrupt_text="<bos> " + t["corrupt_text"]) for t in text_prompts]
    job = {"model": model, "prompts": doubled, "nodes": ["resid_pre", "z"], "estimates": ["atp"],
           "output": os.path.join(tmp, "doubled.h5")}
    path = os.path.join(tmp, "doubled.json")
    json.dump(job, open(path, "w"))
    p = subprocess.run([binary, "run", path, "--quiet"], capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        failures.append(f"<bos> written out: exit {p.returncode}: {p.stderr}")
    else:
        failures += [f"<bos> written out vs ids: {d}" for d in compare(outputs[1], job["output"])]

    # SentencePiece-style BPE (byte fallback, metaspace, a BOS template) on a real model.
    stories = os.path.join(sys.argv[3], "models", "stories260K")
    if os.path.isdir(stories):
        folder = os.path.join(tmp, "stories")
        shutil.copytree(stories, folder)
        shutil.copy(os.path.join(fixtures, "tokenizers", "sentencepiece", "tokenizer.json"), folder)

        def tokenize(text):
            p = subprocess.run([binary, "tokenize", "--model", folder, text], capture_output=True, text=True)
            return [int(x) for x in p.stdout.splitlines()[0].split(",")]
        pairs = [("the cat sat on the mat", "the car sat on the mat"), ("a big red ball", "a big red bell")]  # aligned
        text_prompts = [{"clean_text": c, "corrupt_text": k, "answer": 260, "wrong": 264} for c, k in pairs]
        id_prompts = [{"clean": tokenize(c), "corrupt": tokenize(k), "answer": 260, "wrong": 264} for c, k in pairs]
        if any(len(i["clean"]) != len(i["corrupt"]) for i in id_prompts):
            failures.append("the BPE test prompts do not align; choose others")
        outputs = [run_job(tmp, folder, name, prompts) for name, prompts in (("bpe-text", text_prompts), ("bpe-ids", id_prompts))]
        if not failures:
            failures += [f"BPE text vs ids: {d}" for d in compare(*outputs)]
            with h5py.File(outputs[0], "r") as f:
                if f["prompts/base_tokens"][0, 0] != 1:
                    failures.append("the BPE text prompt does not begin with <s> (the template's BOS)")
        bad = dict(text_prompts[0], answer_text="cat")
        del bad["answer"]
        job = {"model": folder, "prompts": [bad], "nodes": ["z"], "output": os.path.join(tmp, "bad.h5")}
        path = os.path.join(tmp, "bad.json")
        json.dump(job, open(path, "w"))
        problem, _ = user_error([binary, "plan", path], 'prompts[0].answer_text: "cat" is 3 tokens (270 "▁c", 260 "a", 119 "<0x74>")')
        if problem:
            failures.append(f"multi-token answer: {problem}")
    else:
        print(f"SKIP the BPE part: {stories} is not there")
print(f"{len(failures)} failures")
for f in failures:
    print("FAIL", f)
sys.exit(1 if failures else 0)
