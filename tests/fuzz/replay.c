/* A main() for the fuzz harnesses where libFuzzer is not linked (gcc: the release and ASan builds
 * of tests/CMakeLists.txt): each file named is handed to LLVMFuzzerTestOneInput once, as libFuzzer
 * replays a reproducer, so the committed reproducers (tests/fuzz/crashes/) run in every build,
 * clang or not. A crash, abort or exit fails the test as under libFuzzer; ctest's TIMEOUT is the
 * time limit. The memory limit: 4 GB of address space without ASan (a larger allocation fails, and
 * xmalloc exits), and ASan's own refusal of a single allocation above 2 GB with it. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

/* Read by ASan at start-up (ASAN_OPTIONS may still override): libFuzzer's -malloc_limit_mb=2048. */
__attribute__((used)) const char *__asan_default_options(void) {
    return "allocator_may_return_null=0:max_allocation_size_mb=2048";
}

static void limit_memory(void) {
#if !defined(__SANITIZE_ADDRESS__) /* ASan reserves terabytes of address space for its shadow */
    struct rlimit lim = {(rlim_t)4 << 30, (rlim_t)4 << 30};
    if (setrlimit(RLIMIT_AS, &lim) != 0) perror("setrlimit");
#endif
}

/* The whole file into *size bytes (malloc'd), or NULL. */
static uint8_t *read_all(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    uint8_t *buf = NULL;
    size_t n = 0, cap = 0, got = 1;
    while (got) {
        if (n == cap) {
            uint8_t *bigger = realloc(buf, cap = cap ? 2 * cap : 65536);
            if (!bigger) break;
            buf = bigger;
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
    }
    int bad = ferror(f) || got;
    fclose(f);
    if (bad) free(buf);
    *size = n;
    return bad ? NULL : buf;
}

int main(int argc, char **argv) {
    limit_memory();
    if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++) {
        size_t size = 0;
        uint8_t *data = read_all(argv[i], &size);
        if (!data) {
            perror(argv[i]);
            return 1;
        }
        LLVMFuzzerTestOneInput(data, size);
        free(data);
        printf("%s: replayed (%zu bytes)\n", argv[i], size);
    }
    return 0;
}
