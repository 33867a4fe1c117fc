"""CLI: patchsweep tokenize encodes and decodes with a folder's tokenizer.json; every malformed
tokenizer.json (one mutation of a good fixture each), bad text and bad option gives exit status
2, nothing on stdout and one line on stderr naming the file and the field.
Usage: test_tokenize.py BINARY FIXTURES SHARED"""
import copy
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mpi_util import user_error  # noqa: E402

binary, fixtures = sys.argv[1], sys.argv[2]
failures = []
checks = 0


def fixture(name):
    return json.load(open(os.path.join(fixtures, "tokenizers", name, "tokenizer.json"), encoding="utf-8"))


def expect_user_error(args, fragment, label, path=None):
    global checks
    checks += 1
    problem, line = user_error([binary] + args, fragment)
    if not problem and path and path not in line:
        problem = f"{line!r} does not name the file {path}"
    if problem:
        failures.append(f"{label}: {problem}")


def run(args):
    return subprocess.run([binary] + args, capture_output=True, timeout=60)


SP = fixture("sentencepiece")   # Llama-style: normalizer, template, decoder sequence, merges as lists
BL = fixture("byte_level")      # GPT-2 style: merges as strings


def setter(path, value):
    """A mutation that sets (or, with value DELETE, removes) the key at path."""
    def mutate(d):
        for k in path[:-1]:
            d = d[k]
        if value is DELETE:
            del d[path[-1]]
        else:
            d[path[-1]] = value
    return mutate


DELETE = object()
BAD_REGEX = {"Regex": "(unclosed"}

# (label, base, mutation or raw text, fragment the line must contain)
CASES = [
    ("syntax error", SP, '{"model": ', "JSON syntax error"),
    ("empty file", SP, "", "JSON syntax error"),
    ("not an object", SP, "[1, 2]", "not a JSON object"),
    ("vocab entry twice", SP, '{"model": {"type": "BPE", "vocab": {"a": 0, "a": 1}, "merges": []}}',
     'duplicate key "a"'),
    ("no model", SP, setter(["model"], DELETE), "model: missing object"),
    ("unknown model type", SP, setter(["model", "type"], "Unigram"), 'model.type: "Unigram" is not supported'),
    ("model type missing", SP, setter(["model", "type"], DELETE), "model.type: missing"),
    ("vocab missing", SP, setter(["model", "vocab"], DELETE), "model.vocab: missing object"),
    ("vocab not a number", SP, setter(["model", "vocab", "a"], "7"), 'model.vocab["a"]: must be a number'),
    ("vocab negative id", SP, setter(["model", "vocab", "a"], -4), 'model.vocab["a"]: id -4 is not an integer'),
    ("vocab huge id", SP, setter(["model", "vocab", "a"], 1e9), 'is not an integer in [0, 16777216)'),
    # found by fuzzing (tests/fuzz/crashes/fuzz_tokenizer): ids with no int value at all
    ("vocab id beyond int", SP, setter(["model", "vocab", "a"], 3214748386), 'id 3.21475e+09 is not an integer in [0, 16777216)'),
    ("vocab id infinite", SP, '{"model": {"type": "WordLevel", "vocab": {"a": 1e400}}}', 'model.vocab["a"]: id inf is not an integer'),
    ("vocab id twice", SP, setter(["model", "vocab", "a"], 4), "is also given to"),
    ("merges missing", SP, setter(["model", "merges"], DELETE), "model.merges: missing array"),
    ("merge of an unknown token", SP, setter(["model", "merges", 0], ["zz", "a"]),
     'model.merges[0]: "zz" is not in model.vocab'),
    ("merge result unknown", SP, setter(["model", "merges", 1], ["b", "a"]), 'model.merges[1]: "ba" is not in model.vocab'),
    ("merge string with two spaces", BL, setter(["model", "merges", 1], "a b c"),
     "model.merges[1]: \"a b c\" is not two tokens separated by one space"),
    ("merge string without space", BL, setter(["model", "merges", 1], "ab"), "is not two tokens separated by one space"),
    ("merge of another type", SP, setter(["model", "merges", 2], 5), 'model.merges[2]: must be "a b" or ["a", "b"]'),
    ("unk token unknown", SP, setter(["model", "unk_token"], "<nope>"), 'model.unk_token: "<nope>" is not in model.vocab'),
    ("unk token not a string", SP, setter(["model", "unk_token"], 3), "model.unk_token: must be a string"),
    ("byte_fallback not a bool", SP, setter(["model", "byte_fallback"], "yes"), "model.byte_fallback: must be true or false"),
    ("dropout", SP, setter(["model", "dropout"], 0.1), "model.dropout: must be null"),
    ("unknown normalizer", SP, setter(["normalizer", "normalizers", 0, "type"], "Lowercase"),
     'normalizer.normalizers[0].type: "Lowercase" is not supported'),
    ("normalizer without type", SP, setter(["normalizer", "type"], DELETE), "normalizer.type: missing"),
    ("normalizer sequence without list", SP, setter(["normalizer", "normalizers"], DELETE),
     "normalizer.normalizers: missing array"),
    ("replace with a bad regex", SP, setter(["normalizer", "normalizers", 1, "pattern"], BAD_REGEX),
     "normalizer.normalizers[1].pattern.Regex:"),
    ("replace with both patterns", SP, setter(["normalizer", "normalizers", 1, "pattern"], {"String": "a", "Regex": "b"}),
     'normalizer.normalizers[1].pattern: must be {"String": ...} or {"Regex": ...}'),
    ("replace with an empty string", SP, setter(["normalizer", "normalizers", 1, "pattern"], {"String": ""}),
     "String must not be empty"),
    ("prepend without text", SP, setter(["normalizer", "normalizers", 0, "prepend"], DELETE),
     "normalizer.normalizers[0].prepend: missing"),
    ("unknown pre-tokenizer", BL, setter(["pre_tokenizer", "type"], "BertPreTokenizer"),
     'pre_tokenizer.type: "BertPreTokenizer" is not supported'),
    ("byte level without add_prefix_space", BL, setter(["pre_tokenizer", "add_prefix_space"], DELETE),
     "pre_tokenizer.add_prefix_space: missing"),
    ("split with a bad regex", BL, setter(["pre_tokenizer"], {"type": "Split", "pattern": BAD_REGEX, "behavior": "Isolated",
                                                               "invert": False}), "pre_tokenizer.pattern.Regex:"),
    ("split with a bad behaviour", BL, setter(["pre_tokenizer"], {"type": "Split", "pattern": {"String": " "},
                                                                   "behavior": "Sideways", "invert": False}),
     'pre_tokenizer.behavior: "Sideways" is not Removed, Isolated'),
    ("sequence with a bad step", BL, setter(["pre_tokenizer"], {"type": "Sequence", "pretokenizers": [{"type": "Digits"}]}),
     'pre_tokenizer.pretokenizers[0].type: "Digits" is not supported'),
    ("metaspace with two characters", BL, setter(["pre_tokenizer"], {"type": "Metaspace", "replacement": "__"}),
     'pre_tokenizer.replacement: must be one character, got "__"'),
    ("metaspace with an unknown scheme", BL, setter(["pre_tokenizer"], {"type": "Metaspace", "replacement": "_",
                                                                         "prepend_scheme": "sometimes"}),
     'pre_tokenizer.prepend_scheme: "sometimes" is not always, first or never'),
    ("unknown post-processor", SP, setter(["post_processor", "type"], "RobertaProcessing"),
     'post_processor.type: "RobertaProcessing" is not supported'),
    ("template names an unknown special token", SP, setter(["post_processor", "special_tokens"], {}),
     'post_processor.single[0]: special token "<s>" has no ids in post_processor.special_tokens'),
    ("template without the sequence", SP, setter(["post_processor", "single"], [{"SpecialToken": {"id": "<s>", "type_id": 0}}]),
     "post_processor.single: must hold sequence A once"),
    ("template with an id out of range", SP, setter(["post_processor", "special_tokens", "<s>", "ids"], [100000]),
     'special token "<s>": id 100000 is not a token'),
    ("template in the string form", SP, setter(["post_processor", "single"], "<s> $A"),
     "post_processor.single: missing array"),
    ("unknown decoder", SP, setter(["decoder", "decoders", 0, "type"], "WordPiece"),
     'decoder.decoders[0].type: "WordPiece" is not supported'),
    ("strip with a negative count", SP, setter(["decoder", "decoders", 3, "start"], -1),
     "decoder.decoders[3].start: must be a non-negative integer"),
    ("added tokens not a list", SP, setter(["added_tokens"], {"a": 1}), "added_tokens: must be an array"),
    ("added token without id", SP, setter(["added_tokens", 0, "id"], DELETE), "added_tokens[0].id: missing, or not a number"),
    ("added token without content", SP, setter(["added_tokens", 1, "content"], DELETE), "added_tokens[1].content: missing"),
    ("added token with empty content", SP, setter(["added_tokens", 1, "content"], ""), "added_tokens[1]: content is empty"),
    ("added token whose id the vocab contradicts", SP, setter(["added_tokens", 1, "id"], 2),
     'added_tokens[1]: "<s>" has id 2, but model.vocab gives it 1'),
    ("added token on a taken id", BL, setter(["added_tokens", 0, "id"], 5), 'added_tokens[0]: id 5 of "<|endoftext|>" already names'),
    ("added token flag not a bool", SP, setter(["added_tokens", 0, "special"], 1), "added_tokens[0].special: must be true or false"),
]


def write_case(folder, base, mutation):
    os.makedirs(folder)
    path = os.path.join(folder, "tokenizer.json")
    with open(path, "w", encoding="utf-8") as f:
        if isinstance(mutation, str):
            f.write(mutation)
        else:
            d = copy.deepcopy(base)
            mutation(d)
            json.dump(d, f, ensure_ascii=False)
    return path


with tempfile.TemporaryDirectory() as tmp:
    for k, (label, base, mutation, fragment) in enumerate(CASES):
        folder = os.path.join(tmp, f"case{k}")
        path = write_case(folder, base, mutation)
        expect_user_error(["tokenize", "--model", folder, "x"], fragment, label, path)
    # tokenizer_config.json beside a file without a template: its bos_token must be a token
    folder = os.path.join(tmp, "config")
    write_case(folder, BL, lambda d: None)
    config = os.path.join(folder, "tokenizer_config.json")
    open(config, "w").write('{"bos_token": "<nope>"}')
    expect_user_error(["tokenize", "--model", folder, "x"], 'bos_token: "<nope>" is not a token', "config bos", config)
    open(config, "w").write('{"bos_token": ')
    expect_user_error(["tokenize", "--model", folder, "x"], "JSON syntax error", "config syntax", config)

    # a word-level model without an unknown token meets an unknown word (at encode time)
    folder = os.path.join(tmp, "no_unk")
    path = write_case(folder, fixture("split"), setter(["model", "unk_token"], DELETE))
    expect_user_error(["tokenize", "--model", folder, "word"], '"word" is not in the vocabulary, and model.unk_token is not set',
                      "unknown word", path)

    # bad text and options
    good = os.path.join(fixtures, "tokenizers", "sentencepiece")
    os.makedirs(os.path.join(tmp, "empty"))
    expect_user_error(["tokenize", "--model", os.path.join(tmp, "empty"), "x"], "no tokenizer.json", "no tokenizer.json")
    expect_user_error(["tokenize", "--model", good, b"ab\xffcd"], "not valid UTF-8 (byte 2 is 0xff)", "invalid UTF-8")
    expect_user_error(["tokenize", "--model", good, "--decode", "1,x"], '--decode: "1,x" is not a comma-separated list',
                      "decode not integers")
    expect_user_error(["tokenize", "--model", good, "--decode", "1,9999"], "outside the vocabulary", "decode out of range")
    expect_user_error(["tokenize", "--model", good, "--decode", ""], "empty token list", "decode empty")
    expect_user_error(["tokenize", "--model", good], "needs --model DIR and either TEXT or --decode", "no text")
    expect_user_error(["tokenize", "x"], "needs --model DIR", "no model")
    expect_user_error(["tokenize", "--model", good, "x", "--decode", "1"], "either TEXT or --decode", "both")
    expect_user_error(["tokenize", "--model", good, "--bogus", "x"], 'unexpected argument "--bogus"', "unknown option")
    expect_user_error(["tokenize", "--model", good, "x", "y"], 'unexpected argument "y"', "two texts")

# --help: usage on stdout, status 0; the command is in the main usage
for args in (["tokenize", "--help"], ["--help"]):
    checks += 1
    p = run(args)
    if p.returncode != 0 or b"patchsweep tokenize" not in p.stdout and b"tokenize --model" not in p.stdout:
        failures.append(f"{args}: status {p.returncode}, stdout {p.stdout[:200]!r}")

# Encoding and decoding, exact: ids on the first line, then one line per token.
vocab = SP["model"]["vocab"]
want_ids = [1, vocab["▁ab"], vocab["▁"], 3 + 0xC3, 3 + 0xA9]
for args, first_line in ((["ab é"], want_ids), (["--no-special", "ab é"], want_ids[1:]), (["--", "-ab"], None)):
    checks += 1
    p = run(["tokenize", "--model", good] + args)
    lines = p.stdout.decode().splitlines()
    if p.returncode != 0 or not lines or (first_line and lines[0] != ",".join(map(str, first_line))) or \
            len(lines) != 1 + len(lines[0].split(",")):
        failures.append(f"encode {args}: status {p.returncode}, output {p.stdout!r} {p.stderr!r}")
ids = ",".join(map(str, want_ids))
# as Hugging Face: special tokens are decoded too, unless skipped (then the dummy prefix goes)
for args, text in ((["--decode", ids, "--no-special"], "ab é"), (["--decode", ids], "<s> ab é"),
                   (["--decode", "1,260", "--no-special"], "a"), (["--decode", "1,260"], "<s>a")):
    checks += 1
    p = run(["tokenize", "--model", good] + args)
    if p.returncode != 0 or p.stdout.decode() != text + "\n":
        failures.append(f"decode {args}: status {p.returncode}, output {p.stdout!r}, want {text!r}")

print(f"{checks} checks, {len(failures)} failures")
for f in failures:
    print("FAIL", f)
sys.exit(1 if failures else 0)
