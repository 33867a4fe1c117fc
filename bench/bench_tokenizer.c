/* bench_tokenizer: encoding speed of a tokenizer.json on a text file, in one encode call over
 * the whole text (the per-call cache of pre-tokens warms up as it goes), best of three runs.
 * bench/bench_tokenizer.py runs it next to @huggingface/tokenizers under Node on the same file.
 * The last line ("tokenizer_mb_per_second ... ids ... hash ...") is read by that script.
 *
 * usage: bench_tokenizer TOKENIZER_JSON TEXT_FILE */
#include <stdio.h>
#include <stdlib.h>
#include "patchsweep/core.h"
#include "patchsweep/model.h"

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: bench_tokenizer TOKENIZER_JSON TEXT_FILE\n");
        return 2;
    }
    Tokenizer *t;
    char *text;
    size_t len;
    double t0 = now_seconds();
    if (tokenizer_load(&t, argv[1], 0) || read_text_file(argv[2], &text, &len)) {
        fprintf(stderr, "bench_tokenizer: %s\n", ps_error());
        return 2;
    }
    double load = now_seconds() - t0, best = 1e30;
    int *ids = NULL, n = 0;
    for (int run = 0; run < 3; run++) {
        free(ids);
        double start = now_seconds();
        if (tokenizer_encode(t, text, 0, &ids, &n)) {
            fprintf(stderr, "bench_tokenizer: %s\n", ps_error());
            return 2;
        }
        double s = now_seconds() - start;
        if (s < best) best = s;
    }
    /* The ids' hash, so the caller can check both encoders produced the same sequence. */
    uint64_t h = HASH_INIT;
    for (int i = 0; i < n; i++) {
        uint32_t id = (uint32_t)ids[i];
        h = hash_bytes(h, &id, sizeof id);
    }
    printf("%s: %.2f MB of text, %d ids; load %.2f s, encode %.3f s (best of 3)\n", argv[2], len / 1e6, n, load, best);
    printf("tokenizer_mb_per_second %.3f ids %d hash %016llx\n", len / 1e6 / best, n, (unsigned long long)h);
    free(ids);
    free(text);
    tokenizer_free(t);
    return 0;
}
