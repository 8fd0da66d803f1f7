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
    /// Lane-wise `if m { a } else { b }`.
    fn select(m: Self::M, a: Self, b: Self) -> Self;
    /// Lane-wise `if self < lo { lo } else { self }` (NaN stays NaN).
    fn floor_at(self, lo: Self) -> Self;
    /// Lane-wise [`super::batch::floor_exact`].
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
    fn select(m: [bool; W], a: Self, b: Self) -> Self {
        Arr(std::array::from_fn(|l| if m[l] { a.0[l] } else { b.0[l] }))
    }
    #[inline(always)]
    fn floor_at(self, lo: Self) -> Self {
        self.map(lo, |v, lo| if v < lo { lo } else { v })
    }
    #[inline(always)]
    fn floor_exact(self) -> Self {
        Arr(self.0.map(super::batch::floor_exact))
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
            // The operations of `batch::floor_exact`, lane-wise.
            unsafe {
                let two52 = _mm256_set1_pd(4_503_599_627_370_496.0);
                let sign = _mm256_set1_pd(-0.0);
                let y = self.0;
                let a = _mm256_andnot_pd(sign, y);
                let r = _mm256_sub_pd(_mm256_add_pd(a, two52), two52);
                // copysign(r, y): r is >= 0, so or-ing y's sign bit in.
                let t = _mm256_or_pd(_mm256_andnot_pd(sign, r), _mm256_and_pd(sign, y));
                let t1 = _mm256_sub_pd(t, _mm256_set1_pd(1.0));
                let t = _mm256_blendv_pd(t, t1, _mm256_cmp_pd::<_CMP_GT_OQ>(t, y));
                let small = _mm256_cmp_pd::<_CMP_LT_OQ>(a, two52);
                Avx(_mm256_blendv_pd(y, t, small))
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
            // The operations of `batch::floor_exact`, lane-wise; the sign
            // bit is handled with integer ops (AVX-512F has no `andpd`).
            unsafe {
                let two52 = _mm512_set1_pd(4_503_599_627_370_496.0);
                let sign = _mm512_set1_epi64(i64::MIN);
                let y = self.0;
                let yi = _mm512_castpd_si512(y);
                let a = _mm512_castsi512_pd(_mm512_andnot_si512(sign, yi));
                let r = _mm512_sub_pd(_mm512_add_pd(a, two52), two52);
                let ri = _mm512_andnot_si512(sign, _mm512_castpd_si512(r));
                let t = _mm512_castsi512_pd(_mm512_or_si512(ri, _mm512_and_si512(sign, yi)));
                let t1 = _mm512_sub_pd(t, _mm512_set1_pd(1.0));
                let t = _mm512_mask_blend_pd(_mm512_cmp_pd_mask::<_CMP_GT_OQ>(t, y), t, t1);
                let small = _mm512_cmp_pd_mask::<_CMP_LT_OQ>(a, two52);
                Avx512(_mm512_mask_blend_pd(small, y, t))
            }
        }
    }
}
