"""Results files are input too, and disks fill up (the hardening issue): every case below must
end in exit status 2 and exactly one line naming the problem, never a crash or a write out of
bounds (the ASan build runs this too), and must leave the results file as it was.

- a results file whose fingerprint matches but whose datasets were changed: run (resume), top
  and bound each refuse it; and one of an edited job that only gained a site (run grows it);
- damaged files for top and bound: missing datasets, wrong shapes and types, values out of range,
  extents whose values the file does not store, attributes holding several values (the last two
  found by fuzzing, tests/fuzz/crashes/fuzz_results);
- an output folder on a file system too small for the file: refused before anything is written,
  nothing left behind, and the same job runs elsewhere (a small tmpfs; skipped, saying so, when
  it cannot be mounted);
- an output path longer than Open MPI's lockedfile component can take (over 232 characters);
- inputs whose size made a parser quadratic: a header naming a tensor twice among 60,000, a
  checkpoint of 180,002 tensors that all load, a job listing 100,001 positions;
- a FIFO where a file belongs (prompts file, config.json, checkpoint, results file, output);
- help: `patchsweep help`, `run --help` and friends print usage with status 0.
Usage: test_hostile_files.py BINARY FIXTURES SHARED"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mpi_util import user_error  # noqa: E402

binary, fixtures = sys.argv[1], os.path.abspath(sys.argv[2])
failures = []


def digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def expect_refusal(args, fragment, label, keep=None):
    """A user error (one line, exit 2) that leaves `keep` (a path) unchanged."""
    before = digest(keep) if keep else None
    problem, _ = user_error([binary] + args, fragment, timeout=120)
    if problem:
        failures.append(f"{label}: {problem}")
    if keep and digest(keep) != before:
        failures.append(f"{label}: the file changed")


def make_job(tmp, name, **changes):
    job = json.load(open(os.path.join(fixtures, "jobs", "gpt2-pair-denoise.json")))
    job["model"] = os.path.join(fixtures, "models", "gpt2-tiny")
    job["estimates"] = ["atp", "atp_qk", "atp_star"]
    job["output"] = os.path.join(tmp, name + ".h5")
    job.update(changes)
    path = os.path.join(tmp, name + ".json")
    json.dump(job, open(path, "w"))
    return path, job["output"]


def run(job):
    return subprocess.run([binary, "run", job, "--quiet"], capture_output=True, text=True, timeout=300)


class Unstored:
    """A dataset of these extents whose values the file does not store (chunked, none written)."""
    def __init__(self, shape, dtype):
        self.shape, self.dtype = shape, dtype


def rewrite(path, name, data=None, delete=False, attrs=None):
    """Replaces (or deletes) dataset `name` of the file at path, keeping its attributes."""
    with h5py.File(path, "r+") as f:
        if name in f:
            del f[name]
        if isinstance(data, Unstored):
            f.create_dataset(name, shape=data.shape, dtype=data.dtype, chunks=(1,) * len(data.shape))
        elif not delete:
            f.create_dataset(name, data=data)
        for k, v in (attrs or {}).items():
            f.attrs[k] = v


with tempfile.TemporaryDirectory() as tmp:
    job, good = make_job(tmp, "good")
    p = run(job)
    if p.returncode != 0:
        failures.append(f"the good job failed: {p.stderr[-500:]}")
    with h5py.File(good, "r") as f:
        U, P = f["progress/done"].shape[0], f["prompts/length"].shape[0]
        N, S, M = f["effects/exact"].shape[1:]

    # Resuming into a file of the same job whose datasets were changed.
    resume_cases = [
        ("longer done", "progress/done", np.zeros(U + 5, np.uint8)),
        ("shorter done", "progress/done", np.zeros(U - 1, np.uint8)),
        ("longer seconds", "progress/seconds", np.zeros(U + 7)),
        ("shorter seconds", "progress/seconds", np.zeros(3)),
        ("exact of another shape", "effects/exact", np.zeros((P, N, S + 1, M), np.float32)),
        ("exact with another metric count", "effects/exact", np.zeros((P, N, S, M + 1), np.float32)),
        ("done as floats", "progress/done", np.zeros(U)),
        ("unit kinds of another length", "progress/unit_kind", np.zeros(U + 2, np.int32)),
    ]
    for label, name, data in resume_cases:
        bad = os.path.join(tmp, "resume.h5")
        shutil.copy(good, bad)
        rewrite(bad, name, data)
        rjob, _ = make_job(tmp, "resume", output=bad)
        expect_refusal(["run", rjob], "does not have the shape this job writes", f"run: {label}", keep=bad)
    # A file of format 1 (no metric axis) of the same job: named as such, not as a shape mismatch.
    bad = os.path.join(tmp, "resume.h5")
    shutil.copy(good, bad)
    rewrite(bad, "effects/exact", None, delete=True, attrs={"format_version": np.int32(1)})
    rjob, _ = make_job(tmp, "resume", output=bad)
    expect_refusal(["run", rjob], "is a results file of format 1 (an older patchsweep)", "run: format 1", keep=bad)
    # Attributes holding several values where one is read (an array was read into room for one).
    for label, attrs, fragment in [
        ("format an array", {"format": np.array([b"patchsweep"] * 2)}, "is not a patchsweep results file"),
        ("fingerprint an array", {"job_fingerprint": np.array([b"0123456789abcdef"] * 3)}, "fingerprint none"),
        ("format_version an array", {"format_version": np.array([2, 2], np.int32)},
         "format_version is missing or not one integer"),
    ]:
        shutil.copy(good, bad)
        with h5py.File(bad, "r+") as f:
            f.attrs.update(attrs)
        expect_refusal(["run", rjob], fragment, f"run: {label}", keep=bad)

    # An edited job that only gained a site grows its file (src/sweep/extend.c reads the old
    # file's progress and node names): damaged ones are refused, unchanged, not read past their
    # ends or allocated for by their extents.
    ojob, old = make_job(tmp, "grow-old", nodes=["z"], estimates=[])
    if run(ojob).returncode != 0:
        failures.append("the job to grow failed")
    with h5py.File(old, "r") as f:
        units = f["progress/unit_kind"].shape[0]
    grow_cases = [
        ("unit kinds 3-D", "progress/unit_kind", np.zeros((units, 2, 2), np.int32)),
        ("unit prompts shorter", "progress/unit_prompt", np.zeros(1, np.int32)),
        ("done flags longer", "progress/done", np.zeros(units + 9, np.uint8)),
        ("names not stored", "nodes/name", Unstored((2**31 - 1,), "S32")),
    ]
    for label, name, data in grow_cases:
        shutil.copy(old, bad)
        rewrite(bad, name, data)
        gjob, _ = make_job(tmp, "grow", nodes=["z", "mlp_out"], estimates=[], output=bad)
        expect_refusal(["run", gjob], "carrying its results into the edited job's file failed", f"run, grown: {label}",
                       keep=bad)

    # Damaged files for the readers.
    exact = np.zeros((P, N, S, M), np.float32)
    reader_cases = [
        ("exact 1-D", "effects/exact", np.zeros(7, np.float32), None, "/effects/exact has 1 dimensions, expected 4"),
        ("exact of another shape", "effects/exact", np.zeros((P, N + 1, S, M), np.float32), None, "/effects/exact has extent"),
        ("exact without the metric axis", "effects/exact", np.zeros((P, N, S), np.float32), None,
         "/effects/exact has 3 dimensions, expected 4"),
        ("baseline without the metric axis", "baseline/base", np.zeros(P), None, "/baseline/base has 1 dimensions"),
        ("metrics missing", "metrics", None, None, "/metrics is missing"),
        ("metrics longer", "metrics", np.array([b"logit_diff", b"kl"]), None, "has extent"),
        ("format 1", "effects/exact", exact, {"format_version": np.int32(1)}, "is a results file of format 1"),
        ("baseline missing", "baseline/base", None, None, "/baseline/base is missing"),
        ("positions missing", "positions", None, None, "/positions is missing"),
        ("positions longer", "positions", np.zeros(S + 3, np.int32), None, "positions"),
        ("position out of range", "positions", np.full(S, 999, np.int32), None, "/positions[0] is 999"),
        ("names shorter", "nodes/name", np.array([b"L0.H0.z"] * (N - 1)), None, "has extent"),
        ("names variable-length", "nodes/name", np.array(["x"] * N, dtype=h5py.string_dtype()), None,
         "variable-length string"),
        ("tokens missing", "prompts/base_tokens", None, None, "/prompts/base_tokens is missing"),
        ("lengths out of range", "prompts/length", np.full(P, 10**6, np.int32), None, "/prompts/length[0] is 1000000"),
        ("atp_star of another shape", "effects/atp_star", np.zeros((P, N), np.float32), None,
         "/effects/atp_star has 2 dimensions"),
        ("format attribute changed", "effects/exact", exact, {"format": "other"}, "not a patchsweep results file"),
        ("format attribute an array", "effects/exact", exact, {"format": np.array([b"patchsweep"] * 2)},
         "not a patchsweep results file"),
        ("format_version an array", "effects/exact", exact, {"format_version": np.array([2, 2], np.int32)},
         "the attribute format_version is missing or not one integer"),
        ("corruption an array", "effects/exact", exact, {"corruption": np.array([b"pair"] * 4)},
         "the attribute corruption is missing or not one string"),
        ("tokens not stored", "prompts/base_tokens", Unstored((2**31 - 1, 2**31 - 1), "i4"), None,
         "/prompts/base_tokens is [2147483647 x 2147483647] but the file stores 0 bytes"),
        ("names not stored", "nodes/name", Unstored((2**31 - 1,), "S16"), None,
         "/nodes/name is [2147483647] but the file stores 0 bytes"),
        ("exact not stored", "effects/exact", Unstored((P, N, S, M), "f4"), None, "/effects/exact is ["),
    ]
    for label, name, data, attrs, fragment in reader_cases:
        bad = os.path.join(tmp, "damaged.h5")
        shutil.copy(good, bad)
        rewrite(bad, name, data, delete=data is None, attrs=attrs)
        expect_refusal(["top", bad], fragment, f"top: {label}", keep=bad)
        bjob, _ = make_job(tmp, "damaged", output=bad)
        expect_refusal(["bound", bjob, "--site", "z"], fragment, f"bound: {label}", keep=bad)

    # A file compressed after the run (h5repack -f GZIP=9, say) stores fewer bytes than its values
    # hold; it is still read, and gives the same table.
    packed = os.path.join(tmp, "packed.h5")
    shutil.copy(good, packed)
    with h5py.File(packed, "r+") as f:
        values = f["effects/exact"][...]
        del f["effects/exact"]
        f.create_dataset("effects/exact", data=values, compression="gzip", compression_opts=9)
    same = [subprocess.run([binary, "top", path, "-k", "5"], capture_output=True, text=True) for path in (good, packed)]
    if same[1].returncode != 0 or same[0].stdout.replace(good, packed) != same[1].stdout:
        failures.append(f"top on a compressed file: exit {same[1].returncode}: {same[1].stderr[-300:]}")

    # top --metric names a metric the file does not hold: refused with the ones it has.
    expect_refusal(["top", good, "--metric", "kl"], 'holds no metric "kl" (it has: logit_diff)', "top: absent metric",
                   keep=good)

    # top on a site the file lacks is an error, not an empty table; on a partial file it says so.
    zjob, zout = make_job(tmp, "z-only", nodes=["z"], estimates=[])
    if run(zjob).returncode == 0:
        expect_refusal(["top", zout, "--site", "mlp_post"], "has no nodes of site mlp_post", "top: absent site", keep=zout)
    else:
        failures.append("the z-only job failed")
    partial = os.path.join(tmp, "partial.h5")
    shutil.copy(good, partial)
    with h5py.File(partial, "r+") as f:
        f["baseline/base"][1:] = np.nan
        f["baseline/source"][1:] = np.nan
        f["effects/exact"][1:] = np.nan
    p = subprocess.run([binary, "top", partial, "-k", "3"], capture_output=True, text=True)
    if p.returncode != 0 or f"1 of {P} prompts have results so far" not in p.stdout or "nan" in p.stdout.split("\n")[1]:
        failures.append(f"top on a partial file: {p.returncode} {p.stdout[:300]!r}")

    # A file system too small for the results file: refused up front, nothing left behind.
    small = os.path.join(tmp, "small")
    os.makedirs(small)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", small], capture_output=True).returncode == 0
    if mounted:
        try:
            sjob, sout = make_job(tmp, "small", output=os.path.join(small, "out.h5"))
            expect_refusal(["run", sjob], "no space left", "run on a full disk")
            left = os.listdir(small)
            if left:
                failures.append(f"run on a full disk left {left} behind")
            # bound on a results file with no room for /bound: refused, the sweep's file intact
            shutil.copy(good, os.path.join(small, "good.h5"))
            filler = os.path.join(small, "filler")
            free = os.statvfs(small).f_bavail * os.statvfs(small).f_frsize
            with open(filler, "wb") as f:
                f.write(b"\0" * max(free - 4096, 0))
            bjob, _ = make_job(tmp, "bound-full", output=os.path.join(small, "good.h5"))
            expect_refusal(["bound", bjob, "--site", "z"], "no space left", "bound on a full disk",
                           keep=os.path.join(small, "good.h5"))
        finally:
            subprocess.run(["umount", small])
    else:
        print("skipped the full-disk cases: a tmpfs cannot be mounted here (not root?)")

    # An output path longer than Open MPI's lockedfile component takes.
    deep = os.path.join(tmp, "d" * 120, "e" * 120)
    os.makedirs(deep)
    ljob, lout = make_job(deep, "long")
    p = run(ljob)
    if p.returncode != 0 or not os.path.exists(lout):
        failures.append(f"an output path of {len(lout)} characters: exit {p.returncode}: {p.stderr[-300:]}")

# A header of 60,000 tensors naming one twice (a quadratic check took seconds on this; a 100 MB
# header would take an hour), and a job listing 100,000 positions twice over: refused, at once.
with tempfile.TemporaryDirectory() as tmp:
    import struct
    header = {f"t{i}": {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]} for i in range(60000)}
    text = json.dumps(header)[:-1] + ', "t59999": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}'
    folder = os.path.join(tmp, "many")
    os.makedirs(folder)
    shutil.copy(os.path.join(fixtures, "models", "llama-tiny", "config.json"), folder)
    with open(os.path.join(folder, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text.encode() + b"\0" * 4 * 60000)
    expect_refusal(["forward", "--model", folder, "--tokens", "1"], 'tensor "t59999" appears twice', "60,000 tensors")
    pjob, _ = make_job(tmp, "positions", positions=list(range(100000)) + [5])
    expect_refusal(["plan", pjob], "position 5 is listed twice", "100,001 positions")

# A checkpoint of 20,000 tiny layers (180,002 tensors) loads at once: each tensor the model needs
# was looked up linearly in the header, quadratic in its size (about 200 s here; found by fuzzing,
# tests/fuzz/crashes/fuzz_safetensors/timeout-many-tensors). The same through a sharded index.
with tempfile.TemporaryDirectory() as tmp:
    import struct
    L = 20000
    config = {"model_type": "llama", "hidden_size": 2, "intermediate_size": 1, "num_hidden_layers": L,
              "num_attention_heads": 1, "num_key_value_heads": 1, "vocab_size": 4, "max_position_embeddings": 4,
              "rms_norm_eps": 1e-5, "tie_word_embeddings": True}
    per_layer = {"input_layernorm.weight": [2], "self_attn.q_proj.weight": [2, 2], "self_attn.k_proj.weight": [2, 2],
                 "self_attn.v_proj.weight": [2, 2], "self_attn.o_proj.weight": [2, 2],
                 "post_attention_layernorm.weight": [2], "mlp.gate_proj.weight": [1, 2], "mlp.up_proj.weight": [1, 2],
                 "mlp.down_proj.weight": [2, 1]}
    shapes = {"model.embed_tokens.weight": [4, 2], "model.norm.weight": [2]}
    shapes.update({f"model.layers.{l}.{k}": v for l in range(L) for k, v in per_layer.items()})
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = 4 * int(np.prod(shape))
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header).encode()
    for sharded in (False, True):
        folder = os.path.join(tmp, "sharded" if sharded else "single")
        os.makedirs(folder)
        json.dump(config, open(os.path.join(folder, "config.json"), "w"))
        weights = "shard.safetensors" if sharded else "model.safetensors"
        with open(os.path.join(folder, weights), "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text + np.full(offset // 4, 0.01, np.float32).tobytes())
        if sharded:
            json.dump({"weight_map": {name: weights for name in shapes}},
                      open(os.path.join(folder, "model.safetensors.index.json"), "w"))
        label = f"{len(shapes)} tensors{' through an index' if sharded else ''}"
        # Under ASan, tools/test.sh's fast_unwind_on_malloc=0 (full stacks in leak reports) makes
        # each of the header's million allocations slow (about 50 s here); this case is about the
        # lookups, so it takes ASan's fast unwinding (ignored without ASan).
        env = dict(os.environ, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":fast_unwind_on_malloc=1")
        try:
            p = subprocess.run([binary, "forward", "--model", folder, "--tokens", "1,2"], capture_output=True, text=True,
                               timeout=60, env=env)
            if p.returncode != 0:
                failures.append(f"{label}: exit {p.returncode}: {p.stderr[-300:]}")
        except subprocess.TimeoutExpired:
            failures.append(f"{label}: still loading after 60 s")

# A FIFO where a file belongs, that nothing writes to: refused at once (opening it for reading
# waited for a writer forever), as a prompts file, a model's config.json or checkpoint, a results
# file for top, or a run's output.
def refused_at_once(args, fragment, label):
    try:
        problem, _ = user_error([binary] + args, fragment, timeout=30)
    except subprocess.TimeoutExpired:
        problem = "still waiting after 30 s"
    if problem:
        failures.append(f"{label}: {problem}")


with tempfile.TemporaryDirectory() as tmp:
    fifo = os.path.join(tmp, "fifo")
    os.mkfifo(fifo)
    fjob, _ = make_job(tmp, "fifo-prompts", prompts_file=fifo)
    with open(fjob) as f:
        job = json.load(f)
    del job["prompts"]
    json.dump(job, open(fjob, "w"))
    refused_at_once(["plan", fjob], "fifo: not a regular file", "a FIFO as the prompts file")
    tiny = os.path.join(fixtures, "models", "gpt2-tiny")
    for name in ("config.json", "model.safetensors"):
        folder = os.path.join(tmp, "fifo-" + name)
        os.makedirs(folder)
        for other in ("config.json", "model.safetensors"):
            if other == name:
                os.mkfifo(os.path.join(folder, other))
            else:
                shutil.copy(os.path.join(tiny, other), folder)
        refused_at_once(["forward", "--model", folder, "--tokens", "1"], name + ": not a regular file", f"a FIFO as {name}")
    refused_at_once(["top", fifo], "fifo: not a regular file", "top on a FIFO")
    ojob, _ = make_job(tmp, "fifo-output", output=fifo)
    refused_at_once(["run", ojob], "exists and is not an HDF5 results file", "a FIFO as the output")

# Help prints usage with status 0.
for args in (["help"], ["--help"], ["help", "bound"], ["run", "--help"], ["forward", "--help"], ["bound", "-h"],
             ["top", "--help"], ["train", "--help"]):
    p = subprocess.run([binary] + args, capture_output=True, text=True)
    if p.returncode != 0 or "usage: patchsweep" not in p.stdout or p.stderr:
        failures.append(f"patchsweep {' '.join(args)}: exit {p.returncode}, stdout {p.stdout[:80]!r}, stderr {p.stderr[:80]!r}")
p = subprocess.run([binary, "help"], capture_output=True, text=True)
if "--inclusion P" not in p.stdout:
    failures.append("the top-level usage does not list bound's options")

print(f"{len(resume_cases)} resume cases, {2 * len(reader_cases)} reader cases, {len(failures)} failures")
for f in failures:
    print("FAIL", f)
sys.exit(1 if failures else 0)
