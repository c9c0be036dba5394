// Exact GELU (dloral_gelu) and the GEGLU gate (dloral_geglu): gelu(x) = x·Φ(x) =
// 0.5·x·(1 + erf(x/√2)), PyTorch's approximate='none', in float arithmetic, within 1.8 ulp of
// the true value wherever |gelu(x)| ≥ 1e-30 (every float checked against erf / erfc in double).
//
// The AVX2, AVX-512, NEON and scalar paths give the same bits: the scalar code performs the
// vector code's operations in the same order (every multiply-add fused in one is fmaf in the
// others, every other operation rounds on its own, the clamps and choices are the same
// compare-and-select, the table look-ups read the same entries), so a result never depends on
// which path ran or on how the caller split the rows. Elementwise: the vector loops finish with
// the scalar code.
//
// Arithmetic. With t = |x| and the normal tail Q(t) = 1 − Φ(t) = 0.5·erfc(t/√2), gelu(x) is
// x − v for x ≥ 0 and −v for x < 0 (Φ(−t) = Q(t)), v = t·Q(t); so nothing cancels for negative
// x as 1 + erf(x/√2) does, and for x ≥ 0 v ≤ x/2. For t ≥ 1, v = E·G with E = exp(−t²/2) and
// G(t) = t·Q(t)·exp(t²/2) = 0.5·t·erfcx(t/√2), which varies slowly (0.31 to 0.40):
//   t = min(|x|, 12)                     (a NaN x gives 12 here; its result, x − v, is NaN)
//   E = 2^n·(1 + p): s = t·t, e = fma(t, t, −s) (t² = s + e exactly), a = −0.5·s,
//       n = rint(a·log2 e) in [−104, 0], r = fma(n, −LN2_HI, a) + fma(n, −LN2_LO, −0.5·e)
//       (ln 2 in two parts, the first product exact), p = fma(P(r), r·r, r) with P Cephes's expf
//       polynomial (degree 5, Horner with fused steps; 1 + p within 3e-9 of e^r)
//   interval i = min(trunc(t + min(t, 1)), 7): [0, ½), [½, 1), [1, 2), …, [5, 6), [6, 12];
//       d = t − c_i (exact); y = Σ_k C[k][i]·d^k, degree 9, Horner with fused steps: Q(t) on
//       intervals 0 and 1 (interval 0 centred at 0 with C[0][0] = ½, so Q(tiny) is ½ exactly),
//       G(t) on the others (centred where the function is within 0.004 ulp of a float).
//       Coefficients fitted for this file (Tools/fit/gelu_coefficients.py: relative least
//       squares on Chebyshev nodes against scipy's erfc / erfcx), within 0.07 ulp.
//   v = fma(y, p, y)·2^n for i ≥ 2 (the scaling exact: v is normal), fma(y, 0, y)·t = y·t for i < 2
//   gelu = x < 0 ? (x < −12 ? −0 : −v) : x − v
// So gelu(±0) = ±0, gelu(tiny x) = x/2, gelu(+inf) = +inf, gelu(−inf) = −0, NaN → NaN (x's
// payload, quieted), and −0 for x < −12 (where |gelu| < 2.2e-32). GEGLU: y = h·gelu(g), one
// more rounding.
#include "dloral_kernels.h"
#include "kernel_table.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

// MARK: - Entry points

void dloral_gelu(const kernel_table *T, size_t n, const float *x, float *y) { T->gelu(n, x, y); }

void dloral_geglu(const kernel_table *T, size_t rows, size_t half, const float *x, float *y) { T->geglu(rows, half, x, y); }
