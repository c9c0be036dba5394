#!/usr/bin/env python3
"""Fits the polynomial tables of Sources/CKernels/activation.c (dloral_gelu) and prints them.

gelu(x) = x − v for x ≥ 0 and −v for x < 0, v = t·Q(t), t = |x|, Q(t) = erfc(t/√2)/2. On the
interval of t chosen by i = min(trunc(t + min(t, 1)), 7) — [0, ½), [½, 1), [1, 2), …, [5, 6),
[6, 12] — activation.c evaluates a degree-9 polynomial in d = t − c_i (Horner, float, fused):
  i < 2   Q(t) itself (the kernel multiplies by t);
  i ≥ 2   G(t) = t·Q(t)·exp(t²/2) = t·erfcx(t/√2)/2, slowly varying (the kernel multiplies by
          exp(−t²/2) computed on its own).
Interval 0 is anchored at c = 0 with C[0] = ½ exactly, so Q(tiny) is ½ to the last bit. On the
others c_i is the point within 1/16 of the midpoint, on a 2^−12 grid (t − c_i is exact in float),
where the function is closest to a float, so that the rounded constant term C[0] is within a few
thousandths of an ulp. The rest: weighted (relative) least squares on Chebyshev nodes against
scipy's erfc / erfcx in double, the lowest degree whose float coefficients are within 0.02 ulp
(2^−24 relative), else degree 9; on the anchored interval each coefficient is rounded to float in
turn and the higher ones refitted. Prints each interval's relative error (polynomial in double
with the float coefficients) and the C tables.

Needs numpy and scipy. Run: python3 Tools/fit/gelu_coefficients.py
"""
import numpy as np
from scipy.special import erfc, erfcx

DEGREE = 9
ULP = 2.0**-24
TOLERANCE = 0.02 * ULP


def q_tail(t):
    return 0.5 * erfc(t / np.sqrt(2.0))


def g_scaled(t):
    return 0.5 * t * erfcx(t / np.sqrt(2.0))


# (low, high, function, anchored at 0)
INTERVALS = [(0.0, 0.5, q_tail, True), (0.5, 1.0, q_tail, False)] + [
    (float(k), k + 1.0, g_scaled, False) for k in range(1, 6)
] + [(6.0, 12.0, g_scaled, False)]


def chebyshev_nodes(low, high, count=4000):
    k = np.arange(count)
    return (low + high) / 2 + (high - low) / 2 * np.cos(np.pi * (k + 0.5) / count)


def to_float(v):
    return float(np.float32(v))


def relative_error(f, coef, centre, low, high):
    xs = np.linspace(low, high, 50001)
    return np.max(np.abs(np.polyval(coef[::-1], xs - centre) / f(xs) - 1))


def fit(low, high, f, anchored):
    margin = (high - low) * 1e-3
    x = chebyshev_nodes(low if anchored else low - margin, high + margin)
    y = f(x)
    weight = 1 / np.abs(y)
    if anchored:
        centre, c0 = 0.0, to_float(f(0.0))
    else:
        candidates = (low + high) / 2 + np.arange(-256, 257) / 4096
        values = f(candidates)
        miss = np.abs(values - values.astype(np.float32)) / np.spacing(values.astype(np.float32))
        centre = float(candidates[np.argmin(miss)])
        c0 = to_float(f(centre))
    d = x - centre
    for degree in range(4, DEGREE + 1):
        coef, fixed = [c0], np.full_like(y, c0)
        for k in range(1, degree + 1):
            basis = np.vander(d, degree + 1, increasing=True)[:, k:]
            sol, *_ = np.linalg.lstsq(basis * weight[:, None], (y - fixed) * weight, rcond=None)
            if not anchored:
                coef += [to_float(v) for v in sol]
                break
            coef.append(to_float(sol[0]))
            fixed = fixed + coef[-1] * d**k
        coef += [0.0] * (DEGREE - degree)
        if relative_error(f, coef, centre, low, high) < TOLERANCE:
            break
    return centre, coef, relative_error(f, coef, centre, low, high)


def main():
    centres, table = [], []
    for low, high, f, anchored in INTERVALS:
        centre, coef, err = fit(low, high, f, anchored)
        name = "Q" if f is q_tail else "G"
        print(f"// [{low}, {high}] {name}, centre {centre!r}: within {err / ULP:.3f} ulp")
        centres.append(centre)
        table.append(coef)
    print("static const float g_centre[8] = {" + ", ".join(f"{c!r}f" for c in centres) + "};")
    print("static const float g_coef[10][8] = {")
    for k in range(DEGREE + 1):
        print("    {" + ", ".join("%.9ef" % table[i][k] for i in range(len(INTERVALS))) + "},")
    print("};")


if __name__ == "__main__":
    main()
