/* Tokenizers on small synthetic tokenizer.json files (tests/reference/gen_tokenizers.py), each
 * checked against what Hugging Face tokenizers does by its source; NFC against the Unicode
 * conformance file; round trips of random text. The real vocabularies are compared with
 * @huggingface/tokenizers in tests/tokenizer/test_tokenizer_oracles.py. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../../src/model/tokenizer_impl.h"
#include "test_support.h"

static Tokenizer *load(const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "tokenizers/%s/tokenizer.json", name);
    Tokenizer *t = NULL;
    int rc = tokenizer_load(&t, fixture(rel), 0);
    if (rc) fail_msg("%s", ps_error());
    return t;
}

static int id_of(const Tokenizer *t, const char *token) {
    int id = tokenizer_find(t, token);
    if (id < 0) fail_msg("no token \"%s\"", token);
    return id;
}

/* Encodes text and compares with the tokens named (NULL-terminated). */
static void expect_tokens(const Tokenizer *t, const char *text, int special, const char *const *want) {
    int *ids, n, n_want = 0;
    assert_int_equal(tokenizer_encode(t, text, special, &ids, &n), PS_OK);
    while (want[n_want]) n_want++;
    int ok = n == n_want;
    for (int i = 0; ok && i < n; i++) ok = ids[i] == id_of(t, want[i]);
    if (!ok) {
        fprintf(stderr, "encode(\"%s\"):", text);
        for (int i = 0; i < n; i++) fprintf(stderr, " %s", token_string(t, ids[i]));
        fprintf(stderr, "\n");
    }
    free(ids);
    assert_true(ok);
}

#define TOKENS(...) ((const char *const[]){__VA_ARGS__, NULL})

static void expect_round_trip(const Tokenizer *t, const char *text, const char *want) {
    int *ids, n;
    assert_int_equal(tokenizer_encode(t, text, 0, &ids, &n), PS_OK);
    char *back = tokenizer_decode(t, ids, n, 0);
    assert_string_equal(back, want);
    free(back);
    free(ids);
}

/* ---- byte-level BPE (GPT-2) ------------------------------------------------------------------ */

static void test_byte_level(void **state) {
    (void)state;
    Tokenizer *t = load("byte_level");
    expect_tokens(t, "hello the world", 0, TOKENS("hello", "Ġthe", "Ġworld"));
    /* equal ranks merge left first: a a a -> aa a */
    expect_tokens(t, "aaa", 0, TOKENS("aa", "a"));
    /* the pattern: contractions split off, a space stays with the next word, the last of a
     * run of spaces too */
    expect_tokens(t, "it's   he", 0, TOKENS("i", "t", "'", "s", "ĠĠ", "Ġ", "he"));
    expect_tokens(t, "a\n\nb", 0, TOKENS("a", "Ċ", "Ċ", "b"));
    /* special tokens in text; no template, so nothing is added */
    expect_tokens(t, "a<|endoftext|>b", 1, TOKENS("a", "<|endoftext|>", "b"));
    assert_int_equal(tokenizer_adds_bos(t), 0);
    assert_int_equal(tokenizer_bos(t), -1);
    /* every byte has a token: any text comes back exactly */
    expect_round_trip(t, "héllo wörld 🦙 日本\t\r\n ", "héllo wörld 🦙 日本\t\r\n ");
    /* display forms are text; half a character is shown as its bytes */
    assert_string_equal(tokenizer_token(t, id_of(t, "Ġthe")), " the");
    assert_string_equal(tokenizer_token(t, id_of(t, "Ċ")), "\\n");
    assert_string_equal(tokenizer_token(t, 0xF0), "\\xf0");
    /* decoding half an emoji: one replacement character, as Rust's from_utf8_lossy */
    int half[] = {0xF0, 0x9F, 'a'};
    char *s = tokenizer_decode(t, half, 3, 0);
    assert_string_equal(s, "\xEF\xBF\xBD" "a");
    free(s);
    /* skip_special, and ids that name nothing are skipped */
    int ids[] = {'a', id_of(t, "<|endoftext|>"), 99999, 'b'};
    s = tokenizer_decode(t, ids, 4, 1);
    assert_string_equal(s, "ab");
    free(s);
    s = tokenizer_decode(t, ids, 4, 0);
    assert_string_equal(s, "a<|endoftext|>b");
    free(s);
    tokenizer_free(t);
}

static uint32_t random_code_point(Rng *r) {
    switch (rng_next(r) % 4) {
    case 0: return 0x20 + (uint32_t)(rng_next(r) % 0x5F);
    case 1: return (uint32_t)(rng_next(r) % 0x800);
    case 2: {
        uint32_t c = 0x800 + (uint32_t)(rng_next(r) % 0xF800);
        return c >= 0xD800 && c < 0xE000 ? 0x4E00 : c; /* no surrogates */
    }
    default: return 0x10000 + (uint32_t)(rng_next(r) % 0x100000);
    }
}

/* decode(encode(x)) == x for random UTF-8 (controls, all planes) on a byte-level tokenizer. */
static void test_byte_level_round_trips(void **state) {
    (void)state;
    Tokenizer *t = load("byte_level");
    Rng r;
    rng_seed(&r, 7, 0, 0);
    for (int k = 0; k < 1000; k++) {
        Buf text = {0};
        int len = (int)(rng_next(&r) % 40);
        buf_add(&text, "", 0);
        for (int i = 0; i < len; i++) utf8_add(&text, random_code_point(&r));
        expect_round_trip(t, text.p, text.p);
        free(text.p);
    }
    tokenizer_free(t);
}

/* ---- SentencePiece-style BPE (Llama-1/2, legacy layout) ---------------------------------------- */

static void test_sentencepiece(void **state) {
    (void)state;
    Tokenizer *t = load("sentencepiece");
    /* "▁" in front, spaces become "▁", the template adds <s> */
    expect_tokens(t, "ab ab", 1, TOKENS("<s>", "▁ab", "▁ab"));
    expect_tokens(t, "ab ab", 0, TOKENS("▁ab", "▁ab"));
    expect_tokens(t, " cd", 0, TOKENS("▁▁", "cd"));
    /* characters the vocabulary lacks: their UTF-8 bytes */
    expect_tokens(t, "é", 0, TOKENS("▁", "<0xC3>", "<0xA9>"));
    /* a special token in the text; the text after it gets its own "▁" (legacy) */
    expect_tokens(t, "a<s>b", 1, TOKENS("<s>", "▁a", "<s>", "▁", "b"));
    /* the empty text: only what the template adds */
    expect_tokens(t, "", 1, TOKENS("<s>"));
    assert_int_equal(tokenizer_bos(t), 1);
    assert_int_equal(tokenizer_adds_bos(t), 1);
    /* decode: "▁" -> space, bytes -> text, the first space stripped */
    expect_round_trip(t, "ab é cd  e", "ab é cd  e");
    expect_round_trip(t, " leading", " leading");
    int bad[] = {id_of(t, "▁a"), id_of(t, "<0xC3>"), id_of(t, "b")}; /* a lone lead byte */
    char *s = tokenizer_decode(t, bad, 3, 0);
    assert_string_equal(s, "a\xEF\xBF\xBD" "b");
    free(s);
    tokenizer_free(t);
}

static void test_unknown_fused(void **state) {
    (void)state;
    Tokenizer *t = load("bpe_unk");
    expect_tokens(t, "xyz ab", 0, TOKENS("▁", "<unk>", "▁ab"));
    t->fuse_unk = 0;
    expect_tokens(t, "xyz ab", 0, TOKENS("▁", "<unk>", "<unk>", "<unk>", "▁ab"));
    tokenizer_free(t);
}

/* ---- Llama-3 style: Split pattern, ignore_merges, BOS from a Sequence post-processor --------- */

static void test_llama3_style(void **state) {
    (void)state;
    Tokenizer *t = load("llama3_style");
    /* "Ġhello" cannot be reached by merges, but is one vocabulary entry */
    expect_tokens(t, " hello", 0, TOKENS("Ġhello"));
    t->ignore_merges = 0;
    expect_tokens(t, " hello", 0, TOKENS("Ġh", "e", "l", "l", "o"));
    t->ignore_merges = 1;
    /* numbers in groups of three; contractions whatever their case */
    expect_tokens(t, "1234567", 0, TOKENS("123", "45", "6", "7"));
    expect_tokens(t, "DON'T", 0, TOKENS("D", "O", "N", "'T"));
    expect_tokens(t, "x", 1, TOKENS("<|begin_of_text|>", "x"));
    expect_tokens(t, "<|begin_of_text|>x<|eot_id|>", 0, TOKENS("<|begin_of_text|>", "x", "<|eot_id|>"));
    assert_int_equal(tokenizer_bos(t), id_of(t, "<|begin_of_text|>"));
    assert_int_equal(tokenizer_adds_bos(t), 1);
    expect_round_trip(t, "Hi!\n\n  it's 2024 ✓", "Hi!\n\n  it's 2024 ✓");
    tokenizer_free(t);
}

/* ---- added tokens ------------------------------------------------------------------------------ */

static void test_added_tokens(void **state) {
    (void)state;
    Tokenizer *t = load("added_tokens");
    /* lstrip and rstrip take the whitespace around <mask> (it is not encoded) */
    expect_tokens(t, "x <mask>  y", 0, TOKENS("x", "<mask>", "y"));
    /* leftmost-longest: "[SEP]x" beats "[SEP]" */
    expect_tokens(t, "[SEP]x[SEP]", 0, TOKENS("[SEP]x", "[SEP]"));
    /* normalized tokens are matched after NFC: a + U+030C is "ǎ"; two spaces are a token */
    expect_tokens(t, "a\xcc\x8c  b", 0, TOKENS("ǎ", "  ", "b"));
    /* single_word: not inside a word */
    expect_tokens(t, "<w> a<w>", 0, TOKENS("<w>", "Ġ", "a", "<", "w", ">"));
    expect_tokens(t, "a <w>.", 0, TOKENS("a", "Ġ", "<w>", "."));
    int ids[] = {id_of(t, "[SEP]"), 'a'};
    char *s = tokenizer_decode(t, ids, 2, 1);
    assert_string_equal(s, "a");
    free(s);
    tokenizer_free(t);
}

/* ---- Metaspace and WordLevel ----------------------------------------------------------------- */

static void test_metaspace(void **state) {
    (void)state;
    Tokenizer *t = load("metaspace");
    expect_tokens(t, "hello world", 0, TOKENS("▁hello", "▁world"));
    expect_tokens(t, "hello  world", 0, TOKENS("▁hello", "▁", "▁world"));
    /* prepend "first": not after a special token */
    expect_tokens(t, "<s>hello", 0, TOKENS("<s>", "hello"));
    t->pre[0].prepend_scheme = PREPEND_ALWAYS;
    expect_tokens(t, "<s>hello", 0, TOKENS("<s>", "▁hello"));
    int ids[] = {id_of(t, "▁hello"), id_of(t, "▁world")};
    char *s = tokenizer_decode(t, ids, 2, 0);
    assert_string_equal(s, "hello world");
    free(s);
    tokenizer_free(t);
}

static void test_word_level(void **state) {
    (void)state;
    Tokenizer *t;
    char path[4096];
    path_join(path, sizeof path, fixture("../../models/induction-2l"), "tokenizer.json");
    assert_int_equal(tokenizer_load(&t, path, 64), PS_OK);
    assert_true(tokenizer_is_word_level(t));
    expect_tokens(t, " apple\triver\n zebra ", 0, TOKENS("apple", "river", "zebra"));
    int *ids_out = NULL, n_out = 0; /* no unknown token: a word outside the vocabulary is an error */
    assert_int_equal(tokenizer_encode(t, "apple pear", 0, &ids_out, &n_out), PS_EUSER);
    assert_non_null(strstr(ps_error(), "\"pear\" is not in the vocabulary"));
    free(ids_out);
    expect_tokens(t, "apple river", 1, TOKENS("<bos>", "apple", "river")); /* the template puts <bos> first */
    assert_int_equal(tokenizer_bos(t), 0);
    assert_true(tokenizer_adds_bos(t));
    int ids[] = {1, 2};
    char *s = tokenizer_decode(t, ids, 2, 0);
    assert_string_equal(s, "apple river"); /* no decoder: joined with spaces */
    free(s);
    tokenizer_free(t);
}

/* ---- Split behaviours (Hugging Face's normalizer.rs and split.rs tests) ------------------------ */

static void expect_pieces(Tokenizer *t, const char *text, const char *want) {
    Scratch sc = {0};
    sc.region = onig_region_new();
    pre_tokenize(t, text, strlen(text), 1, &sc);
    Buf got = {0};
    buf_add(&got, "", 0);
    for (int i = 0; i < sc.pieces.n; i++) {
        if (i) buf_add(&got, "|", 1);
        buf_add(&got, sc.pieces.text.p + sc.pieces.p[i].start, sc.pieces.p[i].len);
    }
    assert_string_equal(got.p, want);
    free(got.p);
    scratch_free(&sc);
}

static void test_split_behaviors(void **state) {
    (void)state;
    Tokenizer *t = load("split");
    const char *on_dash[] = {"the|final|countdown", "the|-|final|-|-|countdown", "the-|final-|-|countdown",
                             "the|-final|-|-countdown", "the|-|final|--|countdown"};
    for (int b = SPLIT_REMOVED; b <= SPLIT_CONTIGUOUS; b++) {
        t->pre[0].behavior = (SplitBehavior)b;
        expect_pieces(t, "the-final--countdown", on_dash[b]);
    }
    /* a regex matching the words, inverted */
    free(t->pre[0].pattern.literal);
    t->pre[0].pattern.literal = NULL;
    assert_int_equal(regex_compile(&t->pre[0].pattern.regex, "\\w+|[^\\w\\s]+", "test"), PS_OK);
    t->pre[0].invert = 1;
    const char *words[] = {"How|are|you|doing|?", "How| |are| |you| |doing|?", "How |are |you |doing|?",
                           "How| are| you| doing|?", "How| |are| |you| |doing?"};
    for (int b = SPLIT_REMOVED; b <= SPLIT_CONTIGUOUS; b++) {
        t->pre[0].behavior = (SplitBehavior)b;
        expect_pieces(t, "How are you doing?", words[b]);
    }
    tokenizer_free(t);
}

/* ---- bad input ------------------------------------------------------------------------------------ */

static void test_invalid_utf8(void **state) {
    (void)state;
    Tokenizer *t = load("byte_level");
    const char *bad[] = {"a\xff", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "ab\xe2\x82"};
    for (int i = 0; i < 5; i++) {
        int *ids = NULL, n = 0;
        assert_int_equal(tokenizer_encode(t, bad[i], 1, &ids, &n), PS_EUSER);
        assert_non_null(strstr(ps_error(), "not valid UTF-8"));
        assert_null(ids);
    }
    tokenizer_free(t);
}

/* ---- NFC: the Unicode conformance file (NormalizationTest.txt, Debian's unicode-data) --------- */

static int parse_column(const char *field, Buf *out) {
    out->len = 0;
    buf_add(out, "", 0);
    for (const char *p = field; *p && *p != ';';) {
        char *end;
        unsigned long cp = strtoul(p, &end, 16);
        if (end == p) return 0;
        utf8_add(out, (uint32_t)cp);
        p = end;
        while (*p == ' ') p++;
    }
    return 1;
}

static void test_nfc_conformance(void **state) {
    (void)state;
    FILE *f = popen("bzcat /usr/share/unicode/NormalizationTest.txt.bz2 2>/dev/null", "r");
    char line[1024];
    int checked = 0;
    Buf col[5] = {{0}}, got = {0};
    while (f && fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '@' || line[0] == '\n') continue;
        const char *field = line;
        for (int c = 0; c < 5; c++) {
            assert_true(parse_column(field, &col[c]));
            field = strchr(field, ';') + 1;
        }
        /* NFC(c1) = NFC(c2) = NFC(c3) = c2; NFC(c4) = NFC(c5) = c4 */
        for (int c = 0; c < 5; c++) {
            got.len = 0;
            unicode_nfc(&got, col[c].p, col[c].len);
            const Buf *want = c < 3 ? &col[1] : &col[3];
            if (got.len != want->len || memcmp(got.p, want->p, got.len) != 0)
                fail_msg("NFC of column %d of: %s", c + 1, line);
        }
        checked++;
    }
    if (f) pclose(f);
    for (int c = 0; c < 5; c++) free(col[c].p);
    free(got.p);
    if (checked == 0) {
        printf("SKIP: /usr/share/unicode/NormalizationTest.txt.bz2 (Debian unicode-data) or bzcat is missing\n");
        skip();
    }
    printf("NFC: %d conformance lines (Unicode %s tables)\n", checked, unicode_version);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_byte_level),     cmocka_unit_test(test_byte_level_round_trips),
        cmocka_unit_test(test_sentencepiece),  cmocka_unit_test(test_unknown_fused),
        cmocka_unit_test(test_llama3_style),   cmocka_unit_test(test_added_tokens),
        cmocka_unit_test(test_metaspace),      cmocka_unit_test(test_word_level),
        cmocka_unit_test(test_split_behaviors), cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_nfc_conformance),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
