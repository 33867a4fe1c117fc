/* Test helper: encodes a JSON list of strings with one tokenizer.json, loading it once.
 * Usage: tok_batch TOKENIZER_JSON STRINGS_JSON OUT_JSON
 * Writes, per string, {"special": ids with the template's special tokens, "plain": ids without,
 * "decoded": the text of "plain"} or {"error": the message}. */
#include <stdio.h>
#include <stdlib.h>
#include "patchsweep/core.h"
#include "patchsweep/model.h"

static cJSON *encoding(const Tokenizer *t, const char *text, int special, int **ids, int *n) {
    if (tokenizer_encode(t, text, special, ids, n)) return NULL;
    return cJSON_CreateIntArray(*ids, *n);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: tok_batch TOKENIZER_JSON STRINGS_JSON OUT_JSON\n");
        return 2;
    }
    Tokenizer *t;
    cJSON *strings;
    if (tokenizer_load(&t, argv[1], 0) || json_parse_file(argv[2], &strings)) {
        fprintf(stderr, "tok_batch: %s\n", ps_error());
        return 2;
    }
    cJSON *results = cJSON_CreateArray();
    for (const cJSON *s = strings->child; s; s = s->next) {
        cJSON *r = cJSON_CreateObject();
        int *ids = NULL, *plain = NULL, n = 0, n_plain = 0;
        cJSON *with = encoding(t, s->valuestring, 1, &ids, &n);
        cJSON *without = with ? encoding(t, s->valuestring, 0, &plain, &n_plain) : NULL;
        if (with && without) {
            char *decoded = tokenizer_decode(t, plain, n_plain, 0);
            cJSON_AddItemToObject(r, "special", with);
            cJSON_AddItemToObject(r, "plain", without);
            cJSON_AddStringToObject(r, "decoded", decoded);
            free(decoded);
        } else {
            cJSON_Delete(with);
            cJSON_AddStringToObject(r, "error", ps_error());
        }
        free(ids);
        free(plain);
        cJSON_AddItemToArray(results, r);
    }
    char *text = json_take_text(results);
    FILE *f = fopen(argv[3], "w");
    int ok = f && fputs(text, f) >= 0;
    if (f) ok = fclose(f) == 0 && ok;
    free(text);
    cJSON_Delete(strings);
    tokenizer_free(t);
    if (!ok) fprintf(stderr, "tok_batch: cannot write %s\n", argv[3]);
    return ok ? 0 : 1;
}
