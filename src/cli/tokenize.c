/* patchsweep tokenize --model DIR [--no-special] [--] TEXT
 * patchsweep tokenize --model DIR [--no-special] --decode 1,2,3
 * Encodes text with the folder's tokenizer.json (first line: the ids, ready for --tokens and
 * --decode; then one line per token) or decodes ids back into text. Only tokenizer.json is
 * read, not the weights. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/cli.h"
#include "patchsweep/core.h"
#include "patchsweep/model.h"

static const char usage[] =
    "usage: patchsweep tokenize --model DIR [--no-special] [--] TEXT\n"
    "       patchsweep tokenize --model DIR [--no-special] --decode ID,ID,...\n"
    "Encodes TEXT with DIR/tokenizer.json and prints the ids (first line) and each token;\n"
    "--decode prints the text of the ids. --no-special: encode without the special tokens the\n"
    "tokenizer's template adds (BOS, ...); decode without special tokens.\n";

static const char see_help[] = "see patchsweep tokenize --help";

static void print_encoding(const Tokenizer *t, const int *ids, int n) {
    for (int i = 0; i < n; i++) printf("%s%d", i ? "," : "", ids[i]);
    printf("\n");
    for (int i = 0; i < n; i++) {
        const char *s = tokenizer_token(t, ids[i]);
        printf("%6d %8d  \"%s\"\n", i, ids[i], s ? s : "");
    }
}

int cmd_tokenize(int argc, char **argv) {
    const char *dir = NULL, *text = NULL, *decode = NULL;
    int special = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(usage, stdout);
            return 0;
        }
        if (strcmp(argv[i], "--model") == 0 && i + 1 < argc) dir = argv[++i];
        else if (strcmp(argv[i], "--decode") == 0 && i + 1 < argc) decode = argv[++i];
        else if (strcmp(argv[i], "--no-special") == 0) special = 0;
        else if (strcmp(argv[i], "--") == 0 && i + 2 == argc && !text) text = argv[++i];
        else if ((argv[i][0] != '-' || !argv[i][1]) && !text) text = argv[i];
        else return report_error(ps_fail(PS_EUSER, "tokenize: unexpected argument \"%s\"; %s", argv[i], see_help));
    }
    if (!dir || !(text || decode) || (text && decode))
        return report_error(ps_fail(PS_EUSER, "tokenize: needs --model DIR and either TEXT or --decode IDS; %s", see_help));
    char path[4096];
    path_join(path, sizeof path, dir, "tokenizer.json");
    if (!file_exists(path)) return report_error(ps_fail(PS_EUSER, "%s: no tokenizer.json in this folder", dir));
    Tokenizer *t;
    int rc = tokenizer_load(&t, path, 0);
    if (rc) return report_error(rc);
    int *ids = NULL, n = 0;
    if (decode) {
        rc = parse_token_list("--decode", decode, tokenizer_size(t), &ids, &n);
        if (!rc) {
            char *s = tokenizer_decode(t, ids, n, !special);
            printf("%s\n", s);
            free(s);
        }
    } else {
        rc = tokenizer_encode(t, text, special, &ids, &n);
        if (!rc) print_encoding(t, ids, n);
    }
    free(ids);
    tokenizer_free(t);
    return report_error(rc);
}
