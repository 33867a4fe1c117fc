/* Deterministic elementary functions: the same bits on every CPU.
 *
 * glibc picks an implementation of exp, log, pow, sin, cos ... per CPU at run time (its FMA and
 * SSE2 variants may round differently), and other C libraries use other algorithms. Anything
 * that reaches a results file or a trained model therefore goes through SLEEF's "finz"
 * functions instead, which its authors specify as bit-wise consistent across platforms given
 * FMA (https://sleef.org, "Function naming convention"; u10 = at most 1.0 ulp of error, u15 =
 * 1.5). This file is compiled with FMA enabled (x86-64: -mfma); kernels_select() refuses a CPU
 * without it before anything here runs. */
#include <math.h>
#include <sleef.h>
#include "patchsweep/core.h"

float det_expf(float x) { return Sleef_finz_expf1_u10purecfma(x); }
float det_tanhf(float x) { return Sleef_finz_tanhf1_u10purecfma(x); }
float det_erff(float x) { return Sleef_finz_erff1_u10purecfma(x); }

double det_exp(double x) { return Sleef_finz_expd1_u10purecfma(x); }
double det_log(double x) { return Sleef_finz_logd1_u10purecfma(x); }
double det_pow(double x, double y) { return Sleef_finz_powd1_u10purecfma(x, y); }
double det_sin(double x) { return Sleef_finz_sind1_u10purecfma(x); }
double det_cos(double x) { return Sleef_finz_cosd1_u10purecfma(x); }
double det_erfc(double x) { return Sleef_finz_erfcd1_u15purecfma(x); }
