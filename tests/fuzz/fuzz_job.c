/* libFuzzer harness: job_parse_text on the input up to its first NUL byte, as the job file
 * job.json of a temporary folder whose prompts.jsonl holds the bytes after the NUL (for
 * "prompts_file"); a job that parses is then checked (job_check) against the tiny GPT-2 of
 * tests/fixtures/models (vocabulary 64, context 32, 2 layers) given a word-level tokenizer
 * of the words w0 .. w62 and <bos>, so that text prompts resolve too; a job that passes is then
 * read as a run reads it (fingerprint, roles of the runs, window). */
#include <stdint.h>
#include <string.h>
#include "fuzz_util.h"
#include "patchsweep/core.h"
#include "patchsweep/job.h"
#include "patchsweep/model.h"

static Model model;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    if (model_load(&model, PS_FIXTURES "/models/gpt2-tiny") != PS_OK) {
        fprintf(stderr, "fuzz_job: %s\n", ps_error());
        abort();
    }
    char words[4096], path[512];
    size_t n = (size_t)snprintf(words, sizeof words, "{\"model\": {\"type\": \"WordLevel\", \"vocab\": {");
    for (int i = 0; i < model.cfg.vocab - 1; i++) n += (size_t)snprintf(words + n, sizeof words - n, "\"w%d\": %d, ", i, i);
    n += (size_t)snprintf(words + n, sizeof words - n, "\"<bos>\": %d}}}", model.cfg.vocab - 1);
    fuzz_write(path, sizeof path, "words.json", words, n);
    tokenizer_free(model.tokenizer);
    if (tokenizer_load(&model.tokenizer, path, model.cfg.vocab) != PS_OK) abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[512];
    const uint8_t *nul = memchr(data, 0, size);
    size_t n = nul ? (size_t)(nul - data) : size;
    if (nul) fuzz_write(path, sizeof path, "prompts.jsonl", nul + 1, size - n - 1);
    else fuzz_unlink("prompts.jsonl");
    char *text = xmalloc(n + 1);
    memcpy(text, data, n);
    text[n] = 0;
    fuzz_path(path, sizeof path, "job.json");
    Job job;
    int rc = job_parse_text(&job, text, path);
    if (rc == PS_OK) rc = job_check(&job, &model);
    fuzz_outcome(rc);
    if (rc == PS_OK) {
        /* What a run reads of a checked job first: its fingerprint, the roles of each prompt's
         * runs, the layers each node's window covers. */
        job_fingerprint(&job, model.fingerprint);
        for (int p = 0; p < job.n_prompts; p++) job_roles(&job, p);
        for (int l = 0, first, last; l < model.cfg.n_layer; l++) job_window(&job, l, model.cfg.n_layer, &first, &last);
    }
    job_free(&job);
    free(text);
    ps_error_clear();
    return 0;
}
