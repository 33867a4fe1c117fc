/* Loading a Hugging Face tokenizer.json: parsed once with cJSON into flat arrays and hash
 * tables (the JSON tree is freed before returning), and the lookups the rest uses. Every
 * failure names the file and the field. The formats are those of huggingface/tokenizers'
 * serialization (docs/tokenizers.md lists what is supported). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include "tokenizer_impl.h"

enum { MAX_TOKEN_ID = 1 << 24 }; /* far above any real vocabulary; keeps a typo from allocating gigabytes */

typedef struct {
    const char *path;
    Tokenizer *t;
} Loader;

/* Records "<file>: <field>: <what>" and returns PS_EUSER. */
static int fail_at(const Loader *L, const char *field, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail_at(const Loader *L, const char *field, const char *fmt, ...) {
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return ps_fail(PS_EUSER, "%s: %s: %s", L->path, field, what);
}

static const cJSON *item(const cJSON *obj, const char *key) { return cJSON_GetObjectItemCaseSensitive(obj, key); }

static int is_absent(const cJSON *v) { return !v || cJSON_IsNull(v); }

/* field + "." + key (or "[i]") into out. */
static void sub_field(char *out, size_t cap, const char *field, const char *key, int index) {
    int len = key ? snprintf(out, cap, "%s.%s", field, key) : snprintf(out, cap, "%s[%d]", field, index);
    if (len < 0 || (size_t)len >= cap) out[cap - 1] = 0; /* a very deep path is cut short, never overrun */
}

static int get_string(const Loader *L, const cJSON *obj, const char *field, const char *key, int required,
                      const char **out) {
    const cJSON *v = item(obj, key);
    char where[256];
    sub_field(where, sizeof where, field, key, 0);
    if (is_absent(v)) return required ? fail_at(L, where, "missing") : PS_OK;
    if (!cJSON_IsString(v)) return fail_at(L, where, "must be a string");
    *out = v->valuestring;
    return PS_OK;
}

static int get_bool(const Loader *L, const cJSON *obj, const char *field, const char *key, int *out) {
    const cJSON *v = item(obj, key);
    char where[256];
    sub_field(where, sizeof where, field, key, 0);
    if (is_absent(v)) return PS_OK; /* keeps the default */
    if (!cJSON_IsBool(v)) return fail_at(L, where, "must be true or false");
    *out = cJSON_IsTrue(v);
    return PS_OK;
}

static int get_count(const Loader *L, const cJSON *obj, const char *field, const char *key, int *out) {
    const cJSON *v = item(obj, key);
    char where[256];
    sub_field(where, sizeof where, field, key, 0);
    if (is_absent(v)) return PS_OK;
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble <= 1e6) || v->valuedouble != (int)v->valuedouble)
        return fail_at(L, where, "must be a non-negative integer");
    *out = (int)v->valuedouble;
    return PS_OK;
}

static int get_type(const Loader *L, const cJSON *obj, const char *field, const char **type) {
    if (!cJSON_IsObject(obj)) return fail_at(L, field, "must be an object");
    return get_string(L, obj, field, "type", 1, type);
}

/* A single Unicode character, as the Metaspace and Strip fields are. */
static int get_char(const Loader *L, const cJSON *obj, const char *field, const char *key, int required,
                    char out[5]) {
    const char *s = NULL;
    int rc = get_string(L, obj, field, key, required, &s);
    if (rc || !s) return rc;
    size_t n = strlen(s), i = 0;
    uint32_t cp;
    char where[256];
    sub_field(where, sizeof where, field, key, 0);
    if (n == 0 || !utf8_next(s, n, &i, &cp) || i != n) return fail_at(L, where, "must be one character, got \"%s\"", s);
    memcpy(out, s, n + 1);
    return PS_OK;
}

/* ---- the vocabulary ------------------------------------------------------------------------ */

static uint64_t hash_string(const char *s, size_t n) { return hash_bytes(HASH_INIT, s, n); }

const char *token_string(const Tokenizer *t, int id) {
    if (!t || id < 0 || id >= t->n_ids || t->string_at[id] == SIZE_MAX) return NULL;
    return t->strings.p + t->string_at[id];
}

int vocab_find(const Tokenizer *t, const char *s, size_t n) {
    for (size_t h = hash_string(s, n) & t->vocab.mask;; h = (h + 1) & t->vocab.mask) {
        int id = t->vocab.slots[h];
        if (id < 0) return -1;
        const char *have = t->strings.p + t->string_at[id];
        if (strncmp(have, s, n) == 0 && have[n] == 0) return id;
    }
}

static void vocab_insert(Tokenizer *t, int id) {
    const char *s = t->strings.p + t->string_at[id];
    size_t h = hash_string(s, strlen(s)) & t->vocab.mask;
    while (t->vocab.slots[h] >= 0) h = (h + 1) & t->vocab.mask;
    t->vocab.slots[h] = id;
}

static size_t table_size(size_t n) {
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    return cap;
}

static void set_string(Tokenizer *t, int id, const char *s) {
    t->string_at[id] = t->strings.len;
    buf_add(&t->strings, s, strlen(s) + 1);
}

static int check_id(const Loader *L, const char *field, double id) {
    if (!(id >= 0 && id < MAX_TOKEN_ID) || id != (int)id) /* the range first: (int) of 1e20 is undefined */
        return fail_at(L, field, "id %g is not an integer in [0, %d)", id, MAX_TOKEN_ID);
    return PS_OK;
}

/* The largest id model.vocab and added_tokens use, so the tables can be sized first. */
static int largest_id(const Loader *L, const cJSON *vocab, const cJSON *added, int *largest) {
    char field[256];
    for (const cJSON *it = vocab->child; it; it = it->next) {
        snprintf(field, sizeof field, "model.vocab[\"%.100s\"]", it->string);
        if (!cJSON_IsNumber(it)) return fail_at(L, field, "must be a number");
        if (check_id(L, field, it->valuedouble)) return PS_EUSER;
        if ((int)it->valuedouble > *largest) *largest = (int)it->valuedouble;
    }
    int i = 0;
    for (const cJSON *it = added ? added->child : NULL; it; it = it->next, i++) {
        const cJSON *id = item(it, "id");
        snprintf(field, sizeof field, "added_tokens[%d].id", i);
        if (!cJSON_IsNumber(id)) return fail_at(L, field, "missing, or not a number");
        if (check_id(L, field, id->valuedouble)) return PS_EUSER;
        if ((int)id->valuedouble > *largest) *largest = (int)id->valuedouble;
    }
    return PS_OK;
}

static int load_vocab(const Loader *L, const cJSON *vocab) {
    Tokenizer *t = L->t;
    int count = 0;
    for (const cJSON *it = vocab->child; it; it = it->next) count++;
    t->vocab.mask = table_size((size_t)count) - 1;
    t->vocab.slots = xmalloc(sizeof(int32_t) * (t->vocab.mask + 1));
    memset(t->vocab.slots, 0xff, sizeof(int32_t) * (t->vocab.mask + 1));
    for (const cJSON *it = vocab->child; it; it = it->next) {
        int id = (int)it->valuedouble;
        char field[256];
        snprintf(field, sizeof field, "model.vocab[\"%.100s\"]", it->string);
        if (t->string_at[id] != SIZE_MAX)
            return fail_at(L, field, "id %d is also given to \"%.100s\"", id, token_string(t, id));
        if (vocab_find(t, it->string, strlen(it->string)) >= 0) return fail_at(L, field, "appears twice");
        set_string(t, id, it->string);
        vocab_insert(t, id);
    }
    return PS_OK;
}

/* ---- merges ---------------------------------------------------------------------------------- */

static uint64_t merge_key(int left, int right) { return ((uint64_t)(uint32_t)(left + 1) << 32) | (uint32_t)(right + 1); }

static size_t merge_hash(uint64_t key) { return (size_t)((key * 0x9E3779B97F4A7C15ULL) >> 20); }

const MergeSlot *merge_find(const Tokenizer *t, int left, int right) {
    if (!t->merges) return NULL;
    uint64_t key = merge_key(left, right);
    for (size_t h = merge_hash(key) & t->merge_mask;; h = (h + 1) & t->merge_mask) {
        const MergeSlot *m = &t->merges[h];
        if (m->key == key) return m;
        if (m->key == 0) return NULL;
    }
}

/* A later duplicate of a pair replaces the earlier one, as in Hugging Face's HashMap. */
static void merge_insert(Tokenizer *t, int left, int right, uint32_t rank, int merged) {
    uint64_t key = merge_key(left, right);
    size_t h = merge_hash(key) & t->merge_mask;
    while (t->merges[h].key != 0 && t->merges[h].key != key) h = (h + 1) & t->merge_mask;
    t->merges[h] = (MergeSlot){key, rank, merged};
}

static int merge_part(const Loader *L, const char *field, const char *s, size_t n, int *id) {
    *id = vocab_find(L->t, s, n);
    if (*id < 0) return fail_at(L, field, "\"%.*s\" is not in model.vocab", (int)(n > 100 ? 100 : n), s);
    return PS_OK;
}

/* The two halves of merge it: "a b" (exactly one space) or ["a", "b"]. */
static int merge_halves(const Loader *L, const cJSON *it, const char *field, const char *half[2], size_t len[2]) {
    if (cJSON_IsString(it)) {
        const char *s = it->valuestring, *space = strchr(s, ' ');
        if (!space || strchr(space + 1, ' '))
            return fail_at(L, field, "\"%.100s\" is not two tokens separated by one space", s);
        half[0] = s;
        len[0] = (size_t)(space - s);
        half[1] = space + 1;
        len[1] = strlen(space + 1);
        return PS_OK;
    }
    if (!cJSON_IsArray(it) || cJSON_GetArraySize(it) != 2 || !cJSON_IsString(it->child) || !cJSON_IsString(it->child->next))
        return fail_at(L, field, "must be \"a b\" or [\"a\", \"b\"]");
    for (int k = 0; k < 2; k++) {
        half[k] = k ? it->child->next->valuestring : it->child->valuestring;
        len[k] = strlen(half[k]);
    }
    return PS_OK;
}

/* Rank = place in the list ("#version" lines are comments). Both halves and the merged token
 * must be in the vocabulary; the merged token drops the right half's continuing-subword prefix. */
static int load_merges(const Loader *L, const cJSON *merges) {
    Tokenizer *t = L->t;
    t->merge_mask = table_size((size_t)cJSON_GetArraySize(merges)) - 1;
    t->merges = xcalloc(t->merge_mask + 1, sizeof(MergeSlot));
    size_t prefix_len = strlen(t->subword_prefix);
    Buf joined = {0};
    int i = 0, rc = PS_OK;
    uint32_t rank = 0;
    for (const cJSON *it = merges->child; it && !rc; it = it->next, i++) {
        if (cJSON_IsString(it) && strncmp(it->valuestring, "#version", 8) == 0) continue;
        char field[64];
        snprintf(field, sizeof field, "model.merges[%d]", i);
        const char *half[2] = {"", ""};
        size_t len[2] = {0, 0};
        int left, right, merged;
        rc = merge_halves(L, it, field, half, len);
        if (!rc) rc = merge_part(L, field, half[0], len[0], &left);
        if (!rc) rc = merge_part(L, field, half[1], len[1], &right);
        if (rc) break;
        size_t skip = prefix_len <= len[1] && strncmp(half[1], t->subword_prefix, prefix_len) == 0 ? prefix_len : 0;
        joined.len = 0;
        buf_add(&joined, half[0], len[0]);
        buf_add(&joined, half[1] + skip, len[1] - skip);
        rc = merge_part(L, field, joined.p, joined.len, &merged);
        if (!rc) merge_insert(t, left, right, rank++, merged);
    }
    free(joined.p);
    return rc;
}

/* ---- the model ----------------------------------------------------------------------------- */

static char *dup_or_empty(const char *s) { return xstrdup(s ? s : ""); }

static int load_model(const Loader *L, const cJSON *model) {
    Tokenizer *t = L->t;
    const char *type = NULL, *unk = NULL, *prefix = NULL, *suffix = NULL;
    int rc = get_type(L, model, "model", &type);
    if (rc) return rc;
    if (strcmp(type, "BPE") == 0) t->model = MODEL_BPE;
    else if (strcmp(type, "WordLevel") == 0) t->model = MODEL_WORD_LEVEL;
    else return fail_at(L, "model.type", "\"%s\" is not supported (BPE and WordLevel are)", type);
    rc = get_string(L, model, "model", "unk_token", 0, &unk);
    if (!rc) rc = get_string(L, model, "model", "continuing_subword_prefix", 0, &prefix);
    if (!rc) rc = get_string(L, model, "model", "end_of_word_suffix", 0, &suffix);
    if (!rc) rc = get_bool(L, model, "model", "fuse_unk", &t->fuse_unk);
    if (!rc) rc = get_bool(L, model, "model", "byte_fallback", &t->byte_fallback);
    if (!rc) rc = get_bool(L, model, "model", "ignore_merges", &t->ignore_merges);
    if (rc) return rc;
    const cJSON *dropout = item(model, "dropout");
    if (!is_absent(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0))
        return fail_at(L, "model.dropout", "must be null: dropout makes encoding random");
    t->subword_prefix = dup_or_empty(prefix);
    t->word_suffix = dup_or_empty(suffix);
    t->unk_id = -1;
    if (unk && (t->unk_id = vocab_find(t, unk, strlen(unk))) < 0)
        return fail_at(L, "model.unk_token", "\"%s\" is not in model.vocab", unk);
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_ids[b] = t->byte_fallback ? vocab_find(t, name, 6) : -1;
    }
    if (t->model == MODEL_BPE) {
        const cJSON *merges = item(model, "merges");
        if (!cJSON_IsArray(merges)) return fail_at(L, "model.merges", "missing array");
        return load_merges(L, merges);
    }
    return PS_OK;
}

/* ---- patterns and components --------------------------------------------------------------- */

int regex_compile(OnigRegex *re, const char *pattern, const char *where) {
    static OnigEncoding encodings[1];
    encodings[0] = ONIG_ENCODING_UTF8;
    onig_initialize(encodings, 1);
    OnigErrorInfo info;
    const OnigUChar *p = (const OnigUChar *)pattern;
    int r = onig_new(re, p, p + strlen(pattern), ONIG_OPTION_NONE, ONIG_ENCODING_UTF8, ONIG_SYNTAX_DEFAULT, &info);
    if (r != ONIG_NORMAL) {
        OnigUChar msg[ONIG_MAX_ERROR_MESSAGE_LEN];
        onig_error_code_to_str(msg, r, &info);
        *re = NULL;
        return ps_fail(PS_EUSER, "%s: %s", where, (const char *)msg);
    }
    return PS_OK;
}

static int load_pattern(const Loader *L, const cJSON *obj, const char *field, Pattern *p) {
    char where[256], at[512];
    sub_field(where, sizeof where, field, "pattern", 0);
    const cJSON *pat = item(obj, "pattern");
    const cJSON *literal = pat ? item(pat, "String") : NULL, *regex = pat ? item(pat, "Regex") : NULL;
    if (!cJSON_IsObject(pat) || (cJSON_IsString(literal) == cJSON_IsString(regex)))
        return fail_at(L, where, "must be {\"String\": ...} or {\"Regex\": ...}");
    if (cJSON_IsString(literal)) {
        if (!literal->valuestring[0]) return fail_at(L, where, "String must not be empty");
        p->literal = xstrdup(literal->valuestring);
        p->literal_len = strlen(p->literal);
        return PS_OK;
    }
    snprintf(at, sizeof at, "%s: %s.Regex", L->path, where);
    return regex_compile(&p->regex, regex->valuestring, at);
}

static void pattern_free(Pattern *p) {
    if (p->regex) onig_free(p->regex);
    free(p->literal);
}

/* A Sequence: its list (under key) loaded step by step, flattened into the same array. */
typedef int (*LoadStep)(const Loader *L, const cJSON *json, const char *field);

static int load_sequence(const Loader *L, const cJSON *json, const char *field, const char *key, LoadStep load) {
    char where[256], sub[256];
    const cJSON *list = item(json, key);
    sub_field(where, sizeof where, field, key, 0);
    if (!cJSON_IsArray(list)) return fail_at(L, where, "missing array");
    int i = 0, rc = PS_OK;
    for (const cJSON *it = list->child; it && !rc; it = it->next, i++) {
        sub_field(sub, sizeof sub, where, NULL, i);
        rc = load(L, it, sub);
    }
    return rc;
}

static int unsupported(const Loader *L, const char *field, const char *type, const char *supported) {
    char where[256];
    sub_field(where, sizeof where, field, "type", 0);
    return fail_at(L, where, "\"%s\" is not supported (%s are)", type, supported);
}

static int load_normalizer(const Loader *L, const cJSON *json, const char *field) {
    Tokenizer *t = L->t;
    const char *type;
    if (is_absent(json)) return PS_OK;
    int rc = get_type(L, json, field, &type);
    if (rc) return rc;
    if (strcmp(type, "Sequence") == 0) return load_sequence(L, json, field, "normalizers", load_normalizer);
    NormStep step = {0};
    const char *text = NULL;
    if (strcmp(type, "NFC") == 0) step.kind = NORM_NFC;
    else if (strcmp(type, "Prepend") == 0) {
        step.kind = NORM_PREPEND;
        rc = get_string(L, json, field, "prepend", 1, &text);
    } else if (strcmp(type, "Replace") == 0) {
        step.kind = NORM_REPLACE;
        rc = get_string(L, json, field, "content", 1, &text);
        if (!rc) rc = load_pattern(L, json, field, &step.pattern);
    } else {
        return unsupported(L, field, type, "NFC, Prepend, Replace and Sequence");
    }
    step.text = text ? xstrdup(text) : NULL;
    t->norm = xrealloc(t->norm, sizeof(NormStep) * (size_t)(t->n_norm + 1));
    t->norm[t->n_norm++] = step; /* kept even on failure, so tokenizer_free frees it */
    return rc;
}

static int load_prepend_scheme(const Loader *L, const cJSON *json, const char *field, PrependScheme *out) {
    const char *scheme = NULL;
    int add_prefix_space = 1;
    int rc = get_string(L, json, field, "prepend_scheme", 0, &scheme);
    if (!rc) rc = get_bool(L, json, field, "add_prefix_space", &add_prefix_space);
    if (rc) return rc;
    *out = add_prefix_space ? PREPEND_ALWAYS : PREPEND_NEVER; /* files older than prepend_scheme */
    if (!scheme) return PS_OK;
    if (strcmp(scheme, "always") == 0) *out = PREPEND_ALWAYS;
    else if (strcmp(scheme, "first") == 0) *out = PREPEND_FIRST;
    else if (strcmp(scheme, "never") == 0) *out = PREPEND_NEVER;
    else {
        char where[256];
        sub_field(where, sizeof where, field, "prepend_scheme", 0);
        return fail_at(L, where, "\"%s\" is not always, first or never", scheme);
    }
    return PS_OK;
}

static int load_split_behavior(const Loader *L, const cJSON *json, const char *field, SplitBehavior *out) {
    static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    const char *name;
    int rc = get_string(L, json, field, "behavior", 1, &name);
    if (rc) return rc;
    for (int i = 0; i < 5; i++)
        if (strcmp(name, names[i]) == 0) {
            *out = (SplitBehavior)i;
            return PS_OK;
        }
    char where[256];
    sub_field(where, sizeof where, field, "behavior", 0);
    return fail_at(L, where, "\"%s\" is not Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous", name);
}

/* GPT-2's pattern, which Hugging Face's ByteLevel pre-tokenizer compiles with Oniguruma. */
static const char byte_level_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static int load_pre_tokenizer(const Loader *L, const cJSON *json, const char *field) {
    Tokenizer *t = L->t;
    const char *type;
    if (is_absent(json)) return PS_OK;
    int rc = get_type(L, json, field, &type);
    if (rc) return rc;
    if (strcmp(type, "Sequence") == 0) return load_sequence(L, json, field, "pretokenizers", load_pre_tokenizer);
    PreStep step = {0};
    if (strcmp(type, "ByteLevel") == 0) {
        step.kind = PRE_BYTE_LEVEL;
        step.use_regex = 1;
        char where[256];
        sub_field(where, sizeof where, field, "add_prefix_space", 0);
        if (!cJSON_IsBool(item(json, "add_prefix_space"))) rc = fail_at(L, where, "missing, or not true or false");
        if (!rc) rc = get_bool(L, json, field, "add_prefix_space", &step.add_prefix_space);
        if (!rc) rc = get_bool(L, json, field, "use_regex", &step.use_regex);
        if (!rc && step.use_regex && !t->byte_level_regex)
            rc = regex_compile(&t->byte_level_regex, byte_level_pattern, "the ByteLevel pattern");
    } else if (strcmp(type, "Split") == 0) {
        step.kind = PRE_SPLIT;
        rc = load_pattern(L, json, field, &step.pattern);
        if (!rc) rc = load_split_behavior(L, json, field, &step.behavior);
        if (!rc) rc = get_bool(L, json, field, "invert", &step.invert);
    } else if (strcmp(type, "Metaspace") == 0) {
        step.kind = PRE_METASPACE;
        step.split = 1;
        rc = get_char(L, json, field, "replacement", 1, step.replacement);
        if (!rc) rc = load_prepend_scheme(L, json, field, &step.prepend_scheme);
        if (!rc) rc = get_bool(L, json, field, "split", &step.split);
    } else if (strcmp(type, "WhitespaceSplit") == 0) {
        step.kind = PRE_WHITESPACE_SPLIT;
    } else {
        return unsupported(L, field, type, "ByteLevel, Split, Metaspace, WhitespaceSplit and Sequence");
    }
    t->pre = xrealloc(t->pre, sizeof(PreStep) * (size_t)(t->n_pre + 1));
    t->pre[t->n_pre++] = step;
    return rc;
}

static int load_decoder(const Loader *L, const cJSON *json, const char *field) {
    Tokenizer *t = L->t;
    const char *type;
    if (is_absent(json)) return PS_OK;
    int rc = get_type(L, json, field, &type);
    if (rc) return rc;
    t->has_decoder = 1;
    if (strcmp(type, "Sequence") == 0) return load_sequence(L, json, field, "decoders", load_decoder);
    DecStep step = {0};
    const char *content = NULL;
    if (strcmp(type, "ByteLevel") == 0) step.kind = DEC_BYTE_LEVEL;
    else if (strcmp(type, "ByteFallback") == 0) step.kind = DEC_BYTE_FALLBACK;
    else if (strcmp(type, "Fuse") == 0) step.kind = DEC_FUSE;
    else if (strcmp(type, "Metaspace") == 0) {
        step.kind = DEC_METASPACE;
        rc = get_char(L, json, field, "replacement", 1, step.replacement);
        if (!rc) rc = load_prepend_scheme(L, json, field, &step.prepend_scheme);
    } else if (strcmp(type, "Replace") == 0) {
        step.kind = DEC_REPLACE;
        rc = get_string(L, json, field, "content", 1, &content);
        if (!rc) rc = load_pattern(L, json, field, &step.pattern);
    } else if (strcmp(type, "Strip") == 0) {
        step.kind = DEC_STRIP;
        rc = get_char(L, json, field, "content", 1, step.strip);
        if (!rc) rc = get_count(L, json, field, "start", &step.start);
        if (!rc) rc = get_count(L, json, field, "stop", &step.stop);
    } else {
        return unsupported(L, field, type, "ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip and Sequence");
    }
    step.content = content ? xstrdup(content) : NULL;
    t->dec = xrealloc(t->dec, sizeof(DecStep) * (size_t)(t->n_dec + 1));
    t->dec[t->n_dec++] = step;
    return rc;
}

/* TemplateProcessing's single template: special tokens before and after "$A". */
static int load_template(const Loader *L, const cJSON *json, const char *field) {
    Tokenizer *t = L->t;
    char where[256], sub[256];
    const cJSON *single = item(json, "single"), *specials = item(json, "special_tokens");
    sub_field(where, sizeof where, field, "single", 0);
    if (!cJSON_IsArray(single)) return fail_at(L, where, "missing array (the string form is not supported)");
    if (t->has_template) return fail_at(L, field, "a second TemplateProcessing");
    t->has_template = 1;
    int sequences = 0, i = 0;
    for (const cJSON *it = single->child; it; it = it->next, i++) {
        sub_field(sub, sizeof sub, where, NULL, i);
        const cJSON *special = item(it, "SpecialToken"), *sequence = item(it, "Sequence");
        const cJSON *id = special ? item(special, "id") : sequence ? item(sequence, "id") : NULL;
        if (!cJSON_IsString(id))
            return fail_at(L, sub, "must be {\"SpecialToken\": {\"id\": ...}} or {\"Sequence\": {\"id\": \"A\"}}");
        if (sequence) {
            if (strcmp(id->valuestring, "A") != 0) return fail_at(L, sub, "a single template can only hold sequence A");
            sequences++;
            continue;
        }
        const cJSON *entry = cJSON_IsObject(specials) ? item(specials, id->valuestring) : NULL;
        const cJSON *ids = entry ? item(entry, "ids") : NULL;
        if (!cJSON_IsArray(ids))
            return fail_at(L, sub, "special token \"%s\" has no ids in %s.special_tokens", id->valuestring, field);
        for (const cJSON *v = ids->child; v; v = v->next) {
            double value = cJSON_IsNumber(v) ? v->valuedouble : -1;
            if (value < 0 || value >= t->n_ids || value != (int)value)
                return fail_at(L, sub, "special token \"%s\": id %g is not a token", id->valuestring, value);
            int_add(sequences ? &t->suffix : &t->prefix, (int)value);
        }
    }
    if (sequences != 1) return fail_at(L, where, "must hold sequence A once");
    return PS_OK;
}

static int load_post_processor(const Loader *L, const cJSON *json, const char *field) {
    const char *type;
    if (is_absent(json)) return PS_OK;
    int rc = get_type(L, json, field, &type);
    if (rc) return rc;
    if (strcmp(type, "ByteLevel") == 0) return PS_OK; /* moves offsets only; ids unchanged */
    if (strcmp(type, "TemplateProcessing") == 0) return load_template(L, json, field);
    if (strcmp(type, "Sequence") == 0) return load_sequence(L, json, field, "processors", load_post_processor);
    return unsupported(L, field, type, "ByteLevel, TemplateProcessing and Sequence");
}

/* ---- added tokens ---------------------------------------------------------------------------- */

int added_token_of(const Tokenizer *t, int id) {
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].id == id) return i;
    return -1;
}

static int load_added_tokens(const Loader *L, const cJSON *added) {
    Tokenizer *t = L->t;
    int i = 0;
    for (const cJSON *it = added ? added->child : NULL; it; it = it->next, i++) {
        char field[64];
        snprintf(field, sizeof field, "added_tokens[%d]", i);
        AddedToken a = {.id = (int)item(it, "id")->valuedouble};
        const char *content;
        int rc = get_string(L, it, field, "content", 1, &content);
        if (!rc) rc = get_bool(L, it, field, "special", &a.special);
        a.normalized = !a.special;
        if (!rc) rc = get_bool(L, it, field, "normalized", &a.normalized);
        if (!rc) rc = get_bool(L, it, field, "lstrip", &a.lstrip);
        if (!rc) rc = get_bool(L, it, field, "rstrip", &a.rstrip);
        if (!rc) rc = get_bool(L, it, field, "single_word", &a.single_word);
        if (rc) return rc;
        if (!content[0]) return fail_at(L, field, "content is empty");
        /* Hugging Face gives a token the model knows the model's id; a file where the two
         * disagree is refused rather than guessed at. */
        int in_vocab = vocab_find(t, content, strlen(content));
        const char *named = token_string(t, a.id);
        if (in_vocab >= 0 && in_vocab != a.id)
            return fail_at(L, field, "\"%s\" has id %d, but model.vocab gives it %d", content, a.id, in_vocab);
        if (in_vocab < 0 && named)
            return fail_at(L, field, "id %d of \"%s\" already names \"%.100s\"", a.id, content, named);
        if (!named) set_string(t, a.id, content);
        a.content = xstrdup(content);
        t->added = xrealloc(t->added, sizeof(AddedToken) * (size_t)(t->n_added + 1));
        t->added[t->n_added++] = a;
    }
    return PS_OK;
}

/* What each added token is looked for as: normalized tokens are matched in normalized text,
 * so their content goes through the normalizer too (as Hugging Face does). */
static int added_match_forms(Tokenizer *t) {
    int rc = PS_OK;
    Scratch sc = {0};
    sc.region = onig_region_new();
    for (int i = 0; i < t->n_added; i++) {
        AddedToken *a = &t->added[i];
        Buf form = {0};
        if (a->normalized) normalize(t, a->content, strlen(a->content), &form, &sc);
        else buf_add(&form, a->content, strlen(a->content));
        a->match = form.p;
        a->match_len = form.len;
        if (a->normalized) t->any_normalized_added = 1;
        else t->any_raw_added = 1;
        t->added_starts[a->normalized][(unsigned char)a->match[0]] = 1;
        /* single_word looks at the characters around a match: the regex crate's \\w */
        if (a->single_word && !t->word_char && !rc)
            rc = regex_compile(&t->word_char, "[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}]", "\\w");
    }
    scratch_free(&sc);
    return rc;
}

/* ---- display forms: what `forward`, `top` and `tokenize` print ------------------------------ */

static void display_form(Buf *out, const char *raw, int byte_level) {
    Buf bytes = {0};
    size_t n = strlen(raw), i = 0;
    while (i < n) {
        size_t start = i;
        uint32_t cp = 0;
        int valid = utf8_next(raw, n, &i, &cp);
        if (!valid) i++;
        int b = byte_level && valid ? byte_level_byte(cp) : -1;
        if (b >= 0) {
            char c = (char)b;
            buf_add(&bytes, &c, 1);
        } else {
            buf_add(&bytes, raw + start, i - start);
        }
    }
    /* Control characters and bytes that are no UTF-8 on their own are escaped. */
    for (i = 0; i < bytes.len;) {
        size_t start = i;
        uint32_t cp;
        char esc[8];
        if (!utf8_next(bytes.p, bytes.len, &i, &cp)) {
            snprintf(esc, sizeof esc, "\\x%02x", (unsigned char)bytes.p[i++]);
            buf_add(out, esc, strlen(esc));
        } else if (cp == '\n' || cp == '\t') {
            buf_add(out, cp == '\n' ? "\\n" : "\\t", 2);
        } else if (cp < 32 || cp == 127) {
            snprintf(esc, sizeof esc, "\\x%02x", cp);
            buf_add(out, esc, strlen(esc));
        } else {
            buf_add(out, bytes.p + start, i - start);
        }
    }
    buf_add(out, "", 1);
    free(bytes.p);
}

static void make_displays(Tokenizer *t) {
    int byte_level = 0;
    for (int i = 0; i < t->n_dec; i++) byte_level |= t->dec[i].kind == DEC_BYTE_LEVEL;
    t->display_at = xmalloc(sizeof(size_t) * (size_t)t->n_ids);
    for (int id = 0; id < t->n_ids; id++) {
        const char *raw = token_string(t, id);
        t->display_at[id] = raw ? t->displays.len : SIZE_MAX;
        /* Added tokens are shown as written ("<|endoftext|>"), never byte-decoded. */
        if (raw) display_form(&t->displays, raw, byte_level && added_token_of(t, id) < 0);
    }
}

/* ---- the beginning-of-sequence token ---------------------------------------------------------- */

/* The template's first token; else tokenizer_config.json's bos_token, when the folder has one. */
static int load_bos(const Loader *L) {
    Tokenizer *t = L->t;
    t->bos_id = t->prefix.n ? t->prefix.p[0] : -1;
    char dir[4096], path[4096];
    path_dirname(dir, sizeof dir, L->path);
    path_join(path, sizeof path, dir, "tokenizer_config.json");
    if (t->bos_id >= 0 || !file_exists(path)) return PS_OK;
    cJSON *config;
    int rc = json_parse_file(path, &config);
    if (rc) return rc;
    const cJSON *bos = item(config, "bos_token");
    const char *name = cJSON_IsString(bos) ? bos->valuestring : NULL;
    if (cJSON_IsObject(bos) && cJSON_IsString(item(bos, "content"))) name = item(bos, "content")->valuestring;
    if (name && (t->bos_id = tokenizer_find(t, name)) < 0)
        rc = ps_fail(PS_EUSER, "%s: bos_token: \"%s\" is not a token of %s", path, name, L->path);
    cJSON_Delete(config);
    return rc;
}

/* ---- loading -------------------------------------------------------------------------------- */

static int load(const Loader *L, const cJSON *root, int vocab) {
    Tokenizer *t = L->t;
    if (!cJSON_IsObject(root)) return ps_fail(PS_EUSER, "%s: not a JSON object", L->path);
    const cJSON *model = item(root, "model"), *added = item(root, "added_tokens");
    if (!cJSON_IsObject(model)) return fail_at(L, "model", "missing object");
    const cJSON *map = item(model, "vocab");
    if (!cJSON_IsObject(map)) return fail_at(L, "model.vocab", "missing object");
    if (!is_absent(added) && !cJSON_IsArray(added)) return fail_at(L, "added_tokens", "must be an array");
    int largest = vocab - 1;
    int rc = largest_id(L, map, cJSON_IsArray(added) ? added : NULL, &largest);
    if (rc) return rc;
    t->n_ids = largest + 1;
    t->string_at = xmalloc(sizeof(size_t) * (size_t)t->n_ids);
    for (int i = 0; i < t->n_ids; i++) t->string_at[i] = SIZE_MAX;
    rc = load_vocab(L, map);
    if (!rc) rc = load_model(L, model);
    if (!rc) rc = load_normalizer(L, item(root, "normalizer"), "normalizer");
    if (!rc) rc = load_pre_tokenizer(L, item(root, "pre_tokenizer"), "pre_tokenizer");
    if (!rc) rc = load_post_processor(L, item(root, "post_processor"), "post_processor");
    if (!rc) rc = load_decoder(L, item(root, "decoder"), "decoder");
    if (!rc) rc = load_added_tokens(L, cJSON_IsArray(added) ? added : NULL);
    if (rc) return rc;
    rc = added_match_forms(t);
    if (rc) return rc;
    make_displays(t);
    return load_bos(L);
}

int tokenizer_load(Tokenizer **out, const char *path, int vocab) {
    cJSON *root;
    int rc = json_parse_file(path, &root);
    if (rc) return rc;
    Tokenizer *t = xcalloc(1, sizeof *t);
    t->path = xstrdup(path);
    Loader L = {path, t};
    rc = load(&L, root, vocab);
    cJSON_Delete(root);
    if (rc) {
        tokenizer_free(t);
        return rc;
    }
    *out = t;
    return PS_OK;
}

void tokenizer_free(Tokenizer *t) {
    if (!t) return;
    for (int i = 0; i < t->n_norm; i++) {
        free(t->norm[i].text);
        pattern_free(&t->norm[i].pattern);
    }
    for (int i = 0; i < t->n_pre; i++) pattern_free(&t->pre[i].pattern);
    for (int i = 0; i < t->n_dec; i++) {
        free(t->dec[i].content);
        pattern_free(&t->dec[i].pattern);
    }
    for (int i = 0; i < t->n_added; i++) {
        free(t->added[i].content);
        free(t->added[i].match);
    }
    if (t->byte_level_regex) onig_free(t->byte_level_regex);
    if (t->word_char) onig_free(t->word_char);
    free(t->norm);
    free(t->pre);
    free(t->dec);
    free(t->added);
    free(t->prefix.p);
    free(t->suffix.p);
    free(t->merges);
    free(t->subword_prefix);
    free(t->word_suffix);
    free(t->vocab.slots);
    free(t->strings.p);
    free(t->string_at);
    free(t->displays.p);
    free(t->display_at);
    free(t->path);
    free(t);
}

/* ---- public lookups ---------------------------------------------------------------------------- */

const char *tokenizer_token(const Tokenizer *t, int id) {
    if (!t || id < 0 || id >= t->n_ids || t->display_at[id] == SIZE_MAX) return NULL;
    return t->displays.p + t->display_at[id];
}

int tokenizer_find(const Tokenizer *t, const char *token) {
    if (!t) return -1;
    if (t->vocab.slots) {
        int id = vocab_find(t, token, strlen(token));
        if (id >= 0) return id;
    }
    for (int i = 0; i < t->n_added; i++)
        if (strcmp(t->added[i].content, token) == 0) return t->added[i].id;
    return -1;
}

int tokenizer_is_word_level(const Tokenizer *t) { return t && t->model == MODEL_WORD_LEVEL; }

int tokenizer_size(const Tokenizer *t) { return t ? t->n_ids : 0; }

int tokenizer_bos(const Tokenizer *t) { return t ? t->bos_id : -1; }

int tokenizer_adds_bos(const Tokenizer *t) { return t && t->prefix.n > 0; }
