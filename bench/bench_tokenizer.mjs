// @huggingface/tokenizers under Node on the same text as bench_tokenizer: one encode call over
// the whole text, best of three. Prints "tokenizer_mb_per_second ... ids ... hash ..." with the
// same FNV-1a hash of the ids (as 32-bit little-endian integers) as bench_tokenizer.
// usage: node bench_tokenizer.mjs NODE_MODULES TOKENIZER_DIR TEXT_FILE
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [modules, dir, textPath] = process.argv.slice(2);
const { Tokenizer } = await import(pathToFileURL(path.join(modules, "@huggingface/tokenizers/dist/tokenizers.mjs")));
const json = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8"));
const configPath = path.join(dir, "tokenizer_config.json");
const config = fs.existsSync(configPath) ? JSON.parse(fs.readFileSync(configPath, "utf8")) : {};
const bytes = fs.readFileSync(textPath);
const text = bytes.toString("utf8");
let best = Infinity, ids = [];
for (let run = 0; run < 3; run++) {
  const tok = new Tokenizer(json, config); // a fresh cache each run, as bench_tokenizer has
  const start = process.hrtime.bigint();
  ids = tok.encode(text, { add_special_tokens: false }).ids;
  const s = Number(process.hrtime.bigint() - start) / 1e9;
  if (s < best) best = s;
}
let h = 0xcbf29ce484222325n;
const mask = (1n << 64n) - 1n;
for (const id of ids)
  for (let k = 0; k < 4; k++) h = ((h ^ BigInt((id >>> (8 * k)) & 0xff)) * 0x100000001b3n) & mask;
console.log(`tokenizer_mb_per_second ${(bytes.length / 1e6 / best).toFixed(3)} ids ${ids.length} hash ${h.toString(16).padStart(16, "0")}`);
