/* libFuzzer harness: tokenizer_load on the input up to its first NUL byte as tokenizer.json (no
 * model vocabulary to fit), then every lookup, and encoding and decoding: of the bytes after the
 * NUL as text when there are any, else of a fixed text with special tokens, spaces, newlines and
 * non-ASCII characters; the ids encoding gives are decoded with and without special tokens, and
 * so are ids the tokenizer does not name. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz_util.h"
#include "patchsweep/core.h"
#include "patchsweep/model.h"

/* At most this many ids are looked up one by one (a vocabulary may be large). */
enum { LOOKUPS = 4096 };

static void encode_decode(const Tokenizer *t, const char *text) {
    for (int special = 0; special < 2; special++) {
        int *ids = NULL, n = 0;
        if (tokenizer_encode(t, text, special, &ids, &n) == PS_OK) {
            free(tokenizer_decode(t, ids, n, 0));
            free(tokenizer_decode(t, ids, n, 1));
        }
        free(ids);
    }
    const int odd[] = {-1, tokenizer_size(t), 0, 1 << 30};
    free(tokenizer_decode(t, odd, 4, 0));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[512];
    const uint8_t *nul = memchr(data, 0, size);
    size_t n = nul ? (size_t)(nul - data) : size;
    fuzz_write(path, sizeof path, "tokenizer.json", data, n);
    Tokenizer *t = NULL;
    int rc = tokenizer_load(&t, path, 0);
    fuzz_outcome(rc);
    if (rc == PS_OK) {
        tokenizer_is_word_level(t);
        tokenizer_bos(t);
        tokenizer_adds_bos(t);
        int ids = tokenizer_size(t) < LOOKUPS ? tokenizer_size(t) : LOOKUPS;
        for (int id = -1; id <= ids; id++) {
            const char *s = tokenizer_token(t, id);
            if (s) tokenizer_find(t, s);
        }
        tokenizer_find(t, "w1");
        char *text = nul ? xmalloc(size - n) : NULL;
        if (text) memcpy(text, nul + 1, size - n - 1), text[size - n - 1] = 0;
        encode_decode(t, text ? text : "<s>Hello  world!\n\tIt's 2024 \xc3\xa9t\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80</s>");
        free(text);
        tokenizer_free(t);
    }
    ps_error_clear();
    return 0;
}
