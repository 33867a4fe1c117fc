/* Just enough of a Hugging Face tokenizer.json to name tokens: the vocabulary of a WordLevel or
 * BPE model plus added tokens. Byte-level vocabularies (GPT-2) are mapped back to bytes so
 * "Ġthe" displays as " the". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/core.h"
#include "patchsweep/model.h"

struct Tokenizer {
    int vocab;
    int word_level; /* a WordLevel model: text splits into tokens at whitespace */
    char **display; /* [vocab], NULL for ids the file does not name */
    char **raw;     /* [vocab], the strings as written in the file */
};

/* Decodes one UTF-8 code point; returns bytes used (1 on invalid input). */
static int utf8_decode(const unsigned char *s, unsigned *cp) {
    if (s[0] < 0x80) { *cp = s[0]; return 1; }
    if ((s[0] & 0xe0) == 0xc0 && (s[1] & 0xc0) == 0x80) { *cp = ((s[0] & 0x1fu) << 6) | (s[1] & 0x3fu); return 2; }
    if ((s[0] & 0xf0) == 0xe0 && (s[1] & 0xc0) == 0x80 && (s[2] & 0xc0) == 0x80) {
        *cp = ((s[0] & 0x0fu) << 12) | ((s[1] & 0x3fu) << 6) | (s[2] & 0x3fu);
        return 3;
    }
    *cp = s[0];
    return 1;
}

/* GPT-2's bytes_to_unicode, inverted: printable bytes map to themselves, the other 68 bytes
 * to U+0100 onward in increasing order. */
static int byte_of_codepoint(unsigned cp) {
    if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255)) return (int)cp;
    unsigned next = 256;
    for (int b = 0; b < 256; b++) {
        if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) continue;
        if (next++ == cp) return b;
    }
    return -1;
}

/* A display form: byte-level decoded if asked, control characters escaped. */
static char *display_form(const char *raw, int byte_level) {
    size_t n = strlen(raw);
    char *out = xmalloc(4 * n + 1), *o = out;
    const unsigned char *s = (const unsigned char *)raw;
    while (*s) {
        unsigned cp;
        int used = utf8_decode(s, &cp);
        int b = byte_level ? byte_of_codepoint(cp) : -1;
        if (b < 0) {
            memcpy(o, s, (size_t)used);
            o += used;
        } else if (b == '\n') {
            o += sprintf(o, "\\n");
        } else if (b == '\t') {
            o += sprintf(o, "\\t");
        } else if (b < 32 || b == 127) {
            o += sprintf(o, "\\x%02x", b);
        } else {
            *o++ = (char)b;
        }
        s += used;
    }
    *o = 0;
    return out;
}

static int add_token(Tokenizer *t, const char *path, const char *text, double id) {
    if (id < 0 || id != (int)id)
        return ps_fail(PS_EUSER, "%s: token \"%s\" has id %g, expected a non-negative integer", path, text, id);
    if ((int)id >= t->vocab) return PS_OK; /* names beyond the model's vocabulary are never shown */
    free(t->raw[(int)id]);
    t->raw[(int)id] = xstrdup(text);
    return PS_OK;
}

int tokenizer_load(Tokenizer **out, const char *path, int vocab) {
    cJSON *root;
    int rc = json_parse_file(path, &root);
    if (rc) return rc;
    Tokenizer *t = xcalloc(1, sizeof *t);
    t->vocab = vocab;
    t->raw = xcalloc((size_t)vocab, sizeof(char *));
    t->display = xcalloc((size_t)vocab, sizeof(char *));
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *map = model ? cJSON_GetObjectItemCaseSensitive(model, "vocab") : NULL;
    const cJSON *type = model ? cJSON_GetObjectItemCaseSensitive(model, "type") : NULL;
    t->word_level = cJSON_IsString(type) && strcmp(type->valuestring, "WordLevel") == 0;
    if (!cJSON_IsObject(map)) rc = ps_fail(PS_EUSER, "%s: missing object model.vocab", path);
    for (const cJSON *it = map ? map->child : NULL; it && !rc; it = it->next) {
        if (!cJSON_IsNumber(it)) rc = ps_fail(PS_EUSER, "%s: model.vocab[\"%s\"] must be a number", path, it->string);
        else rc = add_token(t, path, it->string, it->valuedouble);
    }
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    for (const cJSON *it = cJSON_IsArray(added) ? added->child : NULL; it && !rc; it = it->next) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(it, "content");
        if (cJSON_IsNumber(id) && cJSON_IsString(content)) rc = add_token(t, path, content->valuestring, id->valuedouble);
    }
    const cJSON *decoder = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    const cJSON *dtype = decoder ? cJSON_GetObjectItemCaseSensitive(decoder, "type") : NULL;
    int byte_level = cJSON_IsString(dtype) && strcmp(dtype->valuestring, "ByteLevel") == 0;
    for (int i = 0; i < vocab && !rc; i++)
        if (t->raw[i]) t->display[i] = display_form(t->raw[i], byte_level);
    cJSON_Delete(root);
    if (rc) {
        tokenizer_free(t);
        return rc;
    }
    *out = t;
    return PS_OK;
}

void tokenizer_free(Tokenizer *t) {
    for (int i = 0; i < t->vocab; i++) {
        free(t->raw[i]);
        free(t->display[i]);
    }
    free(t->raw);
    free(t->display);
    free(t);
}

const char *tokenizer_token(const Tokenizer *t, int id) {
    return t && id >= 0 && id < t->vocab ? t->display[id] : NULL;
}

int tokenizer_find(const Tokenizer *t, const char *token) {
    for (int i = 0; t && i < t->vocab; i++)
        if (t->raw[i] && strcmp(t->raw[i], token) == 0) return i;
    return -1;
}

int tokenizer_is_word_level(const Tokenizer *t) { return t && t->word_level; }
