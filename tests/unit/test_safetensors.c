/* The safetensors reader and model loader against the malformed corpus
 * (tests/reference/gen_malformed.py): every case must fail with PS_EUSER and a message that
 * names the problem; plus the half-precision conversions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/core.h"
#include "patchsweep/model.h"
#include "test_support.h"

static void test_malformed_corpus(void **state) {
    (void)state;
    cJSON *cases;
    if (json_parse_file(fixture("malformed/cases.json"), &cases)) fail_msg("%s", ps_error());
    int n = 0;
    for (const cJSON *c = cases->child; c; c = c->next, n++) {
        char dir[512];
        snprintf(dir, sizeof dir, "malformed/%s", c->string);
        Model m;
        ps_error_clear();
        int rc = model_load(&m, fixture(dir));
        if (rc != PS_EUSER) fail_msg("case %s: status %d, expected %d (user error)", c->string, rc, PS_EUSER);
        if (!strstr(ps_error(), c->valuestring))
            fail_msg("case %s: message \"%s\" does not mention \"%s\"", c->string, ps_error(), c->valuestring);
        if (!strstr(ps_error(), c->string) && !strstr(ps_error(), "malformed/"))
            fail_msg("case %s: message \"%s\" does not name the file", c->string, ps_error());
    }
    assert_true(n >= 10);
    cJSON_Delete(cases);
}

/* Reference values are IEEE 754 facts: binary16 0x3c00 is 1, 0x7bff the largest finite
 * 65504, 0x0001 the smallest subnormal 2^-24; bfloat16 is the top half of a binary32. */
static void test_half_conversions(void **state) {
    (void)state;
    assert_true(f16_widen(0x3c00) == 1.0f);
    assert_true(f16_widen(0xc000) == -2.0f);
    assert_true(f16_widen(0x7bff) == 65504.0f);
    assert_true(f16_widen(0x0001) == 0x1p-24f);
    assert_true(f16_widen(0x0200) == 0x1p-15f);
    assert_true(f16_widen(0x3555) == 0x1.554p-2f);
    assert_true(f16_widen(0x7c00) > 3e38f);
    assert_true(f16_widen(0x7e00) != f16_widen(0x7e00)); /* NaN */
    assert_true(f16_widen(0x8000) == 0.0f);
    assert_true(bf16_widen(0x3f80) == 1.0f);
    assert_true(bf16_widen(0xc0a0) == -5.0f);
    assert_true(bf16_widen(0x4049) == 0x1.92p1f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_malformed_corpus),
        cmocka_unit_test(test_half_conversions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
