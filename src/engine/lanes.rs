//! Explicit SIMD vectors of `W` f64 lanes for the batched kernel.
//!
//! The window sums are plain loops over `[f64; W]` that LLVM vectorises
//! on its own, but the per-lane selects of the signal/equity pass
//! (crosses, the sign of the previous signal, the 0.25 floor, `Cut`,
//! `floor`) defeated its SLP vectoriser: it emitted one scalar compare and
//! branch per lane. So did the divisions that finish the SMA and LSMA, and
//! the nine-row EMA and KAMA recurrences ran partly scalar with 8 lanes. This trait states the operations once; [`Arr`] runs
//! them lane by lane (the baseline path) and [`Avx`] as AVX instructions.
//! Both perform the same IEEE operation on every lane, so they give the
//! same bits.

/// `floor(y)` exactly, without a libm call (SSE2 has no rounding
/// instruction): for `|y| < 2^52`, `(|y| + 2^52) − 2^52` rounds `|y|` to an
/// integer exactly; restoring the sign and stepping down when the result
/// lies above `y` gives the floor, signed zeros included. Larger values,
/// infinities and NaN are returned as they are, like `floor`.
#[inline(always)]
pub(crate) fn floor_exact(y: f64) -> f64 {
    const TWO52: f64 = 4_503_599_627_370_496.0;
    let a = y.abs();
    let t = ((a + TWO52) - TWO52).copysign(y);
    let t = if t > y { t - 1.0 } else { t };
    if a < TWO52 {
        t
    } else {
        y
    }
}

/// `W` f64 lanes and the lane-wise operations the kernel needs. A mask
/// ([`Lanes::M`]) holds one boolean per lane.
///
/// # Safety
///
/// An implementation may require a CPU feature; a caller must only use it
/// where that feature is available (see each implementation).
pub(crate) unsafe trait Lanes<const W: usize>: Copy {
    /// A lane-wise boolean.
    type M: Copy;
    /// Loads `W` lanes.
    fn load(a: &[f64; W]) -> Self;
    /// Stores `W` lanes.
    fn store(self) -> [f64; W];
    /// `x` in every lane.
    fn splat(x: f64) -> Self;
    /// `self + o`.
    fn add(self, o: Self) -> Self;
    /// `self - o`.
    fn sub(self, o: Self) -> Self;
    /// `self * o`.
    fn mul(self, o: Self) -> Self;
    /// `self / o`.
    fn div(self, o: Self) -> Self;
    /// `|self|`.
    fn abs(self) -> Self;
    /// `self == o` (false with a NaN operand).
    fn eq(self, o: Self) -> Self::M;
    /// `self > o` (false with a NaN operand).
    fn gt(self, o: Self) -> Self::M;
    /// `self < o` (false with a NaN operand).
    fn lt(self, o: Self) -> Self::M;
    /// `self <= o` (false with a NaN operand).
    fn le(self, o: Self) -> Self::M;
    /// `self >= o` (false with a NaN operand).
    fn ge(self, o: Self) -> Self::M;
    /// Lane-wise `a && b`.
    fn and(a: Self::M, b: Self::M) -> Self::M;
    /// The mask as bits: bit `l` is lane `l`.
    fn bits(m: Self::M) -> u32;
    /// Lane-wise `if m { a } else { b }`.
    fn select(m: Self::M, a: Self, b: Self) -> Self;
    /// Lane-wise `if self < lo { lo } else { self }` (NaN stays NaN).
    fn floor_at(self, lo: Self) -> Self;
    /// Lane-wise [`floor_exact`].
    fn floor_exact(self) -> Self;
}

/// The baseline: a plain array, one scalar operation per lane.
#[derive(Clone, Copy)]
pub(crate) struct Arr<const W: usize>([f64; W]);

impl<const W: usize> Arr<W> {
    #[inline(always)]
    fn map(self, o: Self, f: impl Fn(f64, f64) -> f64) -> Self {
        Arr(std::array::from_fn(|l| f(self.0[l], o.0[l])))
    }
    #[inline(always)]
    fn test(self, o: Self, f: impl Fn(f64, f64) -> bool) -> [bool; W] {
        std::array::from_fn(|l| f(self.0[l], o.0[l]))
    }
}

// SAFETY: plain Rust, no CPU feature required.
unsafe impl<const W: usize> Lanes<W> for Arr<W> {
    type M = [bool; W];
    #[inline(always)]
    fn load(a: &[f64; W]) -> Self {
        Arr(*a)
    }
    #[inline(always)]
    fn store(self) -> [f64; W] {
        self.0
    }
    #[inline(always)]
    fn splat(x: f64) -> Self {
        Arr([x; W])
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        self.map(o, |a, b| a + b)
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        self.map(o, |a, b| a - b)
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        self.map(o, |a, b| a * b)
    }
    #[inline(always)]
    fn div(self, o: Self) -> Self {
        self.map(o, |a, b| a / b)
    }
    #[inline(always)]
    fn abs(self) -> Self {
        Arr(self.0.map(f64::abs))
    }
    #[inline(always)]
    fn eq(self, o: Self) -> [bool; W] {
        self.test(o, |a, b| a == b)
    }
    #[inline(always)]
    fn gt(self, o: Self) -> [bool; W] {
        self.test(o, |a, b| a > b)
    }
    #[inline(always)]
    fn lt(self, o: Self) -> [bool; W] {
        self.test(o, |a, b| a < b)
    }
    #[inline(always)]
    fn le(self, o: Self) -> [bool; W] {
        self.test(o, |a, b| a <= b)
    }
    #[inline(always)]
    fn ge(self, o: Self) -> [bool; W] {
        self.test(o, |a, b| a >= b)
    }
    #[inline(always)]
    fn and(a: [bool; W], b: [bool; W]) -> [bool; W] {
        std::array::from_fn(|l| a[l] && b[l])
    }
    #[inline(always)]
    fn bits(m: [bool; W]) -> u32 {
        let mut b = 0;
        for (l, &x) in m.iter().enumerate() {
            b |= u32::from(x) << l;
        }
        b
    }
    #[inline(always)]
    fn select(m: [bool; W], a: Self, b: Self) -> Self {
        Arr(std::array::from_fn(|l| if m[l] { a.0[l] } else { b.0[l] }))
    }
    #[inline(always)]
    fn floor_at(self, lo: Self) -> Self {
        self.map(lo, |v, lo| if v < lo { lo } else { v })
    }
    #[inline(always)]
    fn floor_exact(self) -> Self {
        Arr(self.0.map(floor_exact))
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) use avx::{Avx, Avx512};

#[cfg(target_arch = "x86_64")]
mod avx {
    use super::Lanes;
    use std::arch::x86_64::*;

    /// Four lanes in one AVX register. Only valid where the CPU has AVX
    /// (the batched engine uses it only inside its AVX2 kernel, which runs
    /// only after AVX2 was detected).
    #[derive(Clone, Copy)]
    pub(crate) struct Avx(__m256d);

    // SAFETY: every method executes AVX instructions; the only caller is
    // the AVX2 kernel, entered only when the CPU reports AVX2 (which
    // implies AVX). The loads and stores go through `[f64; 4]` references,
    // valid for 32 bytes.
    unsafe impl Lanes<4> for Avx {
        type M = __m256d;
        #[inline(always)]
        fn load(a: &[f64; 4]) -> Self {
            unsafe { Avx(_mm256_loadu_pd(a.as_ptr())) }
        }
        #[inline(always)]
        fn store(self) -> [f64; 4] {
            let mut a = [0.0; 4];
            unsafe { _mm256_storeu_pd(a.as_mut_ptr(), self.0) };
            a
        }
        #[inline(always)]
        fn splat(x: f64) -> Self {
            unsafe { Avx(_mm256_set1_pd(x)) }
        }
        #[inline(always)]
        fn add(self, o: Self) -> Self {
            unsafe { Avx(_mm256_add_pd(self.0, o.0)) }
        }
        #[inline(always)]
        fn sub(self, o: Self) -> Self {
            unsafe { Avx(_mm256_sub_pd(self.0, o.0)) }
        }
        #[inline(always)]
        fn mul(self, o: Self) -> Self {
            unsafe { Avx(_mm256_mul_pd(self.0, o.0)) }
        }
        #[inline(always)]
        fn div(self, o: Self) -> Self {
            unsafe { Avx(_mm256_div_pd(self.0, o.0)) }
        }
        // Ordered, quiet predicates: false when either operand is NaN,
        // exactly Rust's (and Pine's) comparison semantics.
        #[inline(always)]
        fn abs(self) -> Self {
            unsafe { Avx(_mm256_andnot_pd(_mm256_set1_pd(-0.0), self.0)) }
        }
        #[inline(always)]
        fn eq(self, o: Self) -> __m256d {
            unsafe { _mm256_cmp_pd::<_CMP_EQ_OQ>(self.0, o.0) }
        }
        #[inline(always)]
        fn gt(self, o: Self) -> __m256d {
            unsafe { _mm256_cmp_pd::<_CMP_GT_OQ>(self.0, o.0) }
        }
        #[inline(always)]
        fn lt(self, o: Self) -> __m256d {
            unsafe { _mm256_cmp_pd::<_CMP_LT_OQ>(self.0, o.0) }
        }
        #[inline(always)]
        fn le(self, o: Self) -> __m256d {
            unsafe { _mm256_cmp_pd::<_CMP_LE_OQ>(self.0, o.0) }
        }
        #[inline(always)]
        fn ge(self, o: Self) -> __m256d {
            unsafe { _mm256_cmp_pd::<_CMP_GE_OQ>(self.0, o.0) }
        }
        #[inline(always)]
        fn and(a: __m256d, b: __m256d) -> __m256d {
            unsafe { _mm256_and_pd(a, b) }
        }
        #[inline(always)]
        fn bits(m: __m256d) -> u32 {
            // A compare sets every bit of a true lane, its sign bit included.
            unsafe { _mm256_movemask_pd(m) as u32 }
        }
        #[inline(always)]
        fn select(m: __m256d, a: Self, b: Self) -> Self {
            // blendv takes the second source where the mask lane is set.
            unsafe { Avx(_mm256_blendv_pd(b.0, a.0, m)) }
        }
        #[inline(always)]
        fn floor_at(self, lo: Self) -> Self {
            // maxpd(a, b) is `a > b ? a : b`, so maxpd(lo, v) is
            // `lo > v ? lo : v` = `v < lo ? lo : v`, NaN included.
            unsafe { Avx(_mm256_max_pd(lo.0, self.0)) }
        }
        #[inline(always)]
        fn floor_exact(self) -> Self {
            // vroundpd toward −∞ is IEEE floor, so `floor_exact`'s
            // bits (signed zeros, NaN, ±∞ and large values included).
            unsafe {
                Avx(_mm256_round_pd::<
                    { _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC },
                >(self.0))
            }
        }
    }

    /// Eight lanes in one AVX-512 register. Only valid where the CPU has
    /// AVX-512F (used only inside the AVX-512 kernel, which runs only after
    /// AVX-512F was detected).
    #[derive(Clone, Copy)]
    pub(crate) struct Avx512(__m512d);

    // SAFETY: every method executes AVX-512F instructions; the only caller
    // is the AVX-512 kernel, entered only when the CPU reports AVX-512F.
    // The loads and stores go through `[f64; 8]` references, valid for 64
    // bytes.
    unsafe impl Lanes<8> for Avx512 {
        type M = __mmask8;
        #[inline(always)]
        fn load(a: &[f64; 8]) -> Self {
            unsafe { Avx512(_mm512_loadu_pd(a.as_ptr())) }
        }
        #[inline(always)]
        fn store(self) -> [f64; 8] {
            let mut a = [0.0; 8];
            unsafe { _mm512_storeu_pd(a.as_mut_ptr(), self.0) };
            a
        }
        #[inline(always)]
        fn splat(x: f64) -> Self {
            unsafe { Avx512(_mm512_set1_pd(x)) }
        }
        #[inline(always)]
        fn add(self, o: Self) -> Self {
            unsafe { Avx512(_mm512_add_pd(self.0, o.0)) }
        }
        #[inline(always)]
        fn sub(self, o: Self) -> Self {
            unsafe { Avx512(_mm512_sub_pd(self.0, o.0)) }
        }
        #[inline(always)]
        fn mul(self, o: Self) -> Self {
            unsafe { Avx512(_mm512_mul_pd(self.0, o.0)) }
        }
        #[inline(always)]
        fn div(self, o: Self) -> Self {
            unsafe { Avx512(_mm512_div_pd(self.0, o.0)) }
        }
        // Ordered, quiet predicates, as for `Avx`.
        #[inline(always)]
        fn abs(self) -> Self {
            unsafe {
                let sign = _mm512_set1_epi64(i64::MIN);
                let v = _mm512_andnot_si512(sign, _mm512_castpd_si512(self.0));
                Avx512(_mm512_castsi512_pd(v))
            }
        }
        #[inline(always)]
        fn eq(self, o: Self) -> __mmask8 {
            unsafe { _mm512_cmp_pd_mask::<_CMP_EQ_OQ>(self.0, o.0) }
        }
        #[inline(always)]
        fn gt(self, o: Self) -> __mmask8 {
            unsafe { _mm512_cmp_pd_mask::<_CMP_GT_OQ>(self.0, o.0) }
        }
        #[inline(always)]
        fn lt(self, o: Self) -> __mmask8 {
            unsafe { _mm512_cmp_pd_mask::<_CMP_LT_OQ>(self.0, o.0) }
        }
        #[inline(always)]
        fn le(self, o: Self) -> __mmask8 {
            unsafe { _mm512_cmp_pd_mask::<_CMP_LE_OQ>(self.0, o.0) }
        }
        #[inline(always)]
        fn ge(self, o: Self) -> __mmask8 {
            unsafe { _mm512_cmp_pd_mask::<_CMP_GE_OQ>(self.0, o.0) }
        }
        #[inline(always)]
        fn and(a: __mmask8, b: __mmask8) -> __mmask8 {
            a & b
        }
        #[inline(always)]
        fn bits(m: __mmask8) -> u32 {
            u32::from(m)
        }
        #[inline(always)]
        fn select(m: __mmask8, a: Self, b: Self) -> Self {
            // mask_blend takes the second source where the mask bit is set.
            unsafe { Avx512(_mm512_mask_blend_pd(m, b.0, a.0)) }
        }
        #[inline(always)]
        fn floor_at(self, lo: Self) -> Self {
            // vmaxpd(a, b) is `a > b ? a : b` here too (see `Avx`).
            unsafe { Avx512(_mm512_max_pd(lo.0, self.0)) }
        }
        #[inline(always)]
        fn floor_exact(self) -> Self {
            // vrndscalepd toward −∞ with scale 0 is IEEE floor (see `Avx`).
            unsafe {
                Avx512(_mm512_roundscale_pd::<
                    { _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC },
                >(self.0))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_exact_equals_floor() {
        let mut vals = vec![
            0.0,
            -0.0,
            0.5,
            -0.5,
            1.0,
            -1.0,
            0.49999999999999994,
            -0.49999999999999994,
            100.5,
            -100.5,
            1e300,
            -1e300,
            4503599627370495.5,
            -4503599627370495.5,
            9e15,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        let mut z = 0x1234_5678_9abc_def0u64;
        for _ in 0..100_000 {
            z = z
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            vals.push(((z >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 203.0);
            vals.push(f64::from_bits(z));
        }
        for v in vals {
            let (a, b) = (floor_exact(v), v.floor());
            assert!(
                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                "{v:e}: {a:e} vs {b:e}"
            );
        }
    }

    /// Every implementation's `floor_exact` is `f64::floor`, bit for bit.
    #[test]
    fn floor_exact_is_floor_on_every_path() {
        let mut vals = vec![
            0.0,
            -0.0,
            0.5,
            -0.5,
            -1.5,
            4503599627370495.5,
            -4503599627370495.5,
            9e15,
            1e300,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ];
        let mut z = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            z = z
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            vals.push(((z >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 203.0);
            vals.push(f64::from_bits(z));
        }
        let want: Vec<u64> = vals
            .iter()
            .map(|v| if v.is_nan() { 0 } else { v.floor().to_bits() })
            .collect();
        let bits = |v: f64| if v.is_nan() { 0 } else { v.to_bits() };
        for (c, w) in vals.chunks_exact(4).zip(want.chunks_exact(4)) {
            let a = Arr::<4>::load(&[c[0], c[1], c[2], c[3]])
                .floor_exact()
                .store();
            assert_eq!(a.map(bits), [w[0], w[1], w[2], w[3]], "{c:?}");
        }
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 (which implies AVX) was detected.
                let got: Vec<u64> = vals
                    .chunks_exact(4)
                    .flat_map(|c| unsafe { avx_floor(c) })
                    .collect();
                assert_eq!(got, want[..got.len()]);
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: AVX-512F was detected.
                let got: Vec<u64> = vals
                    .chunks_exact(8)
                    .flat_map(|c| unsafe { avx512_floor(c) })
                    .collect();
                assert_eq!(got, want[..got.len()]);
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn avx_floor(c: &[f64]) -> [u64; 4] {
        let v = Avx::load(&[c[0], c[1], c[2], c[3]]).floor_exact().store();
        v.map(|x| if x.is_nan() { 0 } else { x.to_bits() })
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn avx512_floor(c: &[f64]) -> [u64; 8] {
        let a: [f64; 8] = std::array::from_fn(|i| c[i]);
        let v = Avx512::load(&a).floor_exact().store();
        v.map(|x| if x.is_nan() { 0 } else { x.to_bits() })
    }
}
