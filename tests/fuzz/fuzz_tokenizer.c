/* libFuzzer harness (thin: tokenizer.c is being replaced): tokenizer_load on the input as
 * tokenizer.json for a 64-token vocabulary, then every lookup. */
#include <stdint.h>
#include "fuzz_util.h"
#include "patchsweep/core.h"
#include "patchsweep/model.h"

enum { VOCAB = 64 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[512];
    fuzz_write(path, sizeof path, "tokenizer.json", data, size);
    Tokenizer *t = NULL;
    int rc = tokenizer_load(&t, path, VOCAB);
    fuzz_outcome(rc);
    if (rc == PS_OK) {
        tokenizer_is_word_level(t);
        for (int id = -1; id <= VOCAB; id++) {
            const char *s = tokenizer_token(t, id);
            if (s) tokenizer_find(t, s);
        }
        tokenizer_find(t, "w1");
        tokenizer_free(t);
    }
    ps_error_clear();
    return 0;
}
