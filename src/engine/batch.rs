//! The batched ATC engine: several symbols in lock-step, one SIMD lane per
//! symbol, bit-identical to the single-series engine ([`super::compute`]).
//!
//! # Why lanes are symbols
//!
//! Every number the golden vectors check, and every cross and rounding
//! decision downstream, depends on the exact bits of the single-series
//! engine. Reordering a sum or fusing a multiply-add would change them. So
//! the batch never changes *which* operations a series sees or their order;
//! it only runs [`BATCH_LANES`] series side by side: the state of the
//! engine becomes `[f64; W]` instead of `f64`, and every step is a plain
//! loop over the lanes that LLVM turns into vector instructions (SSE2 on the
//! baseline target, AVX2 when the CPU has it, chosen at run time; both paths
//! perform the same IEEE operations, so they give the same bits). Branches
//! that depend on a value (crosses, equity returns, the floor) become
//! per-lane selects; branches that depend only on the bar index stay
//! branches.
//!
//! # Work shared without changing a bit
//!
//! * `R` once per symbol; the growth factors `exp(La·t)` once per call
//!   (they depend only on `lambda` and `i − cutout`) and shared by every
//!   symbol and every one of the 60 equity curves.
//! * SMA, LSMA and the KAMA noise sum their windows oldest first. Two
//!   windows that *start* on the same bar share their prefix exactly: the
//!   length-30 sum is the length-29 sum plus one more term, computed by the
//!   very same additions. So for each start bar one running sum of up to the
//!   longest length yields all nine lengths of the family (34 additions
//!   instead of 252 at the default lengths), bit for bit. WMA sums newest
//!   first with length-dependent weights, so it has no shared prefix and
//!   stays O(L) per length.
//! * The nine recurrences of a family (EMA, DEMA, KAMA, the equities) are
//!   advanced together bar by bar, so the CPU has nine independent chains
//!   instead of one long dependent one.
//!
//! # Ragged lengths
//!
//! Every step of ATC is causal: bar `i` depends only on bars `<= i`. So a
//! shorter series is padded by repeating its last close up to the length of
//! the longest series in its batch and its outputs are cut back; the padding
//! cannot reach a real bar. Symbols are grouped by length (longest first) so
//! little work is wasted on padding.

use rayon::prelude::*;

use super::atc::{compute_unchecked, validate_close, AtcOutput, Detail, LENGTHS_PER_FAMILY};
use super::error::EngineError;
use super::ma::{KAMA_FAST, KAMA_SLOW};
use super::params::{AtcParams, Family};

/// Symbols per batch: one f64 lane each. Four lanes are one AVX2 register
/// (two SSE2 registers); more lanes would only add register pressure to the
/// nine-way interleaved recurrences.
pub const BATCH_LANES: usize = 4;

/// Window start bars summed side by side in the shared-prefix sums, so each
/// lane has several independent addition chains in flight.
const STARTS: usize = 4;

const K: usize = LENGTHS_PER_FAMILY;

/// Which instruction set the kernels may use. Both give identical bits;
/// the choice only exists so tests can prove it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// The best the running CPU supports (AVX2 if detected, else baseline).
    Auto,
    /// The baseline target only (SSE2 on x86-64).
    Baseline,
}

/// What the batched engine returns per symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchDetail {
    /// `avg` and `dir` only (what trading needs); the other fields of
    /// [`AtcOutput`] are empty.
    Direction,
    /// Exactly the fields [`super::Detail::Signal`] keeps: `r`, `l1`,
    /// `eq2`, `avg`, `dir`.
    Signal,
}

/// Runs the full ATC on every series of `closes` (any lengths), batching
/// [`BATCH_LANES`] symbols per SIMD pass and batches in parallel on the
/// current rayon pool. Results are in input order and bit-identical to
/// [`super::compute`] with [`super::Detail::Signal`] (restricted to the
/// fields `detail` keeps), whatever the thread count or batch grouping.
///
/// A bad parameter set fails the whole call; a bad series gives its own
/// error and does not affect the others.
pub fn compute_batch(
    closes: &[&[f64]],
    params: &AtcParams,
    detail: BatchDetail,
) -> Result<Vec<Result<AtcOutput, EngineError>>, EngineError> {
    compute_batch_isa(closes, params, detail, Isa::Auto)
}

/// [`compute_batch`] with an explicit instruction set (for tests and
/// benchmarks that compare the code paths).
pub fn compute_batch_isa(
    closes: &[&[f64]],
    params: &AtcParams,
    detail: BatchDetail,
    isa: Isa,
) -> Result<Vec<Result<AtcOutput, EngineError>>, EngineError> {
    params.validate()?;
    let kp = KernelParams::new(params, detail == BatchDetail::Signal);
    let mut out: Vec<Option<Result<AtcOutput, EngineError>>> = Vec::with_capacity(closes.len());
    let mut ok = Vec::with_capacity(closes.len());
    for (i, c) in closes.iter().enumerate() {
        match validate_close(c) {
            Ok(()) => {
                out.push(None);
                ok.push(i);
            }
            Err(e) => out.push(Some(Err(e))),
        }
    }
    // Longest first, ties in input order: batches hold similar lengths, so
    // padding is rare, and the grouping is a pure function of the input.
    ok.sort_by_key(|&i| std::cmp::Reverse(closes[i].len()));
    let longest = ok.first().map_or(0, |&i| closes[i].len());
    // exp(La·t) for t = i − cutout: the same f64 input to the same `exp`
    // as `growth_scaled_returns`, so the same bits, computed once.
    let growth: Vec<f64> = (0..longest.saturating_sub(kp.cutout))
        .map(|t| (kp.la * t as f64).exp())
        .collect();
    let avx2 = isa == Isa::Auto && has_avx2();
    let results: Vec<Vec<(usize, AtcOutput)>> = ok
        .par_chunks(BATCH_LANES)
        .map_init(Scratch::default, |scratch, chunk| {
            let series: Vec<&[f64]> = chunk.iter().map(|&i| closes[i]).collect();
            let outs = if series.len() == 1 {
                // A lone series would fill one lane of four; the
                // single-series engine (lane-parallel across bars) gives
                // the same bits faster.
                vec![single(series[0], params, kp.keep)]
            } else {
                run_kernel::<BATCH_LANES>(&series, &growth, &kp, avx2, scratch)
            };
            chunk.iter().copied().zip(outs).collect()
        })
        .collect();
    let results = results.into_iter().flatten();
    for (i, o) in results {
        out[i] = Some(Ok(o));
    }
    Ok(out
        .into_iter()
        .map(|o| o.unwrap_or(Err(EngineError::EmptySeries)))
        .collect())
}

/// The single-series engine's output, trimmed to what `keep` asks for.
fn single(close: &[f64], params: &AtcParams, keep: bool) -> AtcOutput {
    let mut o = compute_unchecked(close, params, Detail::Signal);
    if !keep {
        o.r = Vec::new();
        o.l1 = Vec::new();
        o.eq2 = Vec::new();
    }
    o
}

/// Buffers a worker reuses from batch to batch: the per-family MA rows are
/// large enough that fresh allocations would be fresh pages, and faulting
/// them in cost about 15% of the kernel's time.
struct Scratch<const W: usize> {
    mas: Vec<[f64; W]>,
    tmp: Vec<[f64; W]>,
    tmp2: Vec<[f64; W]>,
}

impl<const W: usize> Default for Scratch<W> {
    fn default() -> Self {
        Scratch {
            mas: Vec::new(),
            tmp: Vec::new(),
            tmp2: Vec::new(),
        }
    }
}

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The parameters as the kernel uses them, scaled exactly as the
/// single-series engine scales them.
struct KernelParams {
    lens: [[usize; K]; 6],
    la: f64,
    d: f64,
    cutout: usize,
    start: f64,
    weights: [f64; 6],
    long_threshold: f64,
    short_threshold: f64,
    keep: bool,
}

impl KernelParams {
    fn new(p: &AtcParams, keep: bool) -> Self {
        let mut lens = [[0; K]; 6];
        let mut weights = [0.0; 6];
        for f in Family::ALL {
            // validate() has run, so every family has its nine lengths.
            lens[f.index()] = p.lengths(f).unwrap_or([2; K]);
            weights[f.index()] = p.weight(f);
        }
        KernelParams {
            lens,
            la: p.la(),
            d: p.decay_multiplier(),
            cutout: p.cutout,
            start: p.starting_equity,
            weights,
            long_threshold: p.long_threshold,
            short_threshold: p.short_threshold,
            keep,
        }
    }
}

/// Packs up to `W` series into lanes (padding as the module doc explains),
/// runs the kernel and unpacks one output per series.
fn run_kernel<const W: usize>(
    series: &[&[f64]],
    growth: &[f64],
    kp: &KernelParams,
    avx2: bool,
    scratch: &mut Scratch<W>,
) -> Vec<AtcOutput> {
    let n = series.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut x = vec![[0.0f64; W]; n];
    for l in 0..W {
        // Empty lanes repeat the first series: wasted but harmless work.
        let s = series.get(l).unwrap_or(&series[0]);
        let last = s[s.len() - 1];
        for (i, v) in x.iter_mut().enumerate() {
            v[l] = s.get(i).copied().unwrap_or(last);
        }
    }
    let k = dispatch::<W>(&x, growth, kp, avx2, scratch);
    series
        .iter()
        .enumerate()
        .map(|(l, s)| {
            let m = s.len();
            let col = |v: &[[f64; W]]| -> Vec<f64> { v[..m].iter().map(|e| e[l]).collect() };
            let mut o = AtcOutput {
                r: Vec::new(),
                ma: Vec::new(),
                sig: Vec::new(),
                eq: Vec::new(),
                l1: Vec::new(),
                eq2: Vec::new(),
                avg: col(&k.avg),
                dir: k.dir[..m].iter().map(|e| e[l] as i8).collect(),
            };
            if kp.keep {
                o.r = col(&k.r);
                o.l1 = k.l1.iter().map(|v| col(v)).collect();
                o.eq2 = k.eq2.iter().map(|v| col(v)).collect();
            }
            o
        })
        .collect()
}

/// Kernel outputs in lane layout.
struct KernelOut<const W: usize> {
    r: Vec<[f64; W]>,
    l1: Vec<Vec<[f64; W]>>,
    eq2: Vec<Vec<[f64; W]>>,
    avg: Vec<[f64; W]>,
    dir: Vec<[f64; W]>,
}

fn dispatch<const W: usize>(
    x: &[[f64; W]],
    growth: &[f64],
    kp: &KernelParams,
    avx2: bool,
    sc: &mut Scratch<W>,
) -> KernelOut<W> {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: `avx2` is only true when the CPU reports AVX2.
        return unsafe { kernel_avx2::<W>(x, growth, kp, sc) };
    }
    let _ = avx2;
    kernel::<W>(x, growth, kp, sc)
}

/// The same kernel compiled with AVX2 enabled. AVX2 has no instruction that
/// changes an IEEE result (Rust never contracts to FMA), so the bits match
/// the baseline path.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn kernel_avx2<const W: usize>(
    x: &[[f64; W]],
    growth: &[f64],
    kp: &KernelParams,
    sc: &mut Scratch<W>,
) -> KernelOut<W> {
    kernel::<W>(x, growth, kp, sc)
}

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

/// The whole ATC for `W` lanes of equal length. `inline(always)` so that
/// [`kernel_avx2`] gets its own AVX2 copy of everything.
#[inline(always)]
fn kernel<const W: usize>(
    x: &[[f64; W]],
    growth: &[f64],
    kp: &KernelParams,
    sc: &mut Scratch<W>,
) -> KernelOut<W> {
    let n = x.len();
    let nan = [f64::NAN; W];
    let cutout = kp.cutout;

    // Rate of change and growth-scaled returns (spec sec. 6).
    let mut r = vec![nan; n];
    for i in 1..n {
        for l in 0..W {
            r[i][l] = (x[i][l] - x[i - 1][l]) / x[i - 1][l];
        }
    }
    let mut rg = vec![nan; n];
    for i in cutout..n {
        let g = growth[i - cutout];
        for l in 0..W {
            rg[i][l] = r[i][l] * g;
        }
    }

    for v in [&mut sc.mas, &mut sc.tmp, &mut sc.tmp2] {
        v.clear();
        v.resize(K * n, nan);
    }
    let (mas, tmp, tmp2) = (
        sc.mas.as_mut_slice(),
        sc.tmp.as_mut_slice(),
        sc.tmp2.as_mut_slice(),
    );
    let mut avg_num = vec![[0.0; W]; n];
    let mut avg_den = vec![[0.0; W]; n];
    let mut l1_rows = Vec::new();
    let mut eq2_rows = Vec::new();
    let mut l1 = vec![nan; n];
    let mut eq2 = vec![nan; n];
    // |x[j+1] − x[j]| for the KAMA noise; computed once for nine lengths.
    let diffs: Vec<[f64; W]> = x
        .windows(2)
        .map(|w| {
            let mut o = [0.0; W];
            for l in 0..W {
                o[l] = (w[1][l] - w[0][l]).abs();
            }
            o
        })
        .collect();

    for f in Family::ALL {
        let lens = &kp.lens[f.index()];
        mas.fill(nan);
        match f {
            Family::Ema => ema_rows(&|_| x, &[0; K], lens, &mut *mas, n),
            Family::Hma => {
                prefix_sums::<W, false>(x, lens, &mut *tmp, &mut [], n);
                for (k, &len) in lens.iter().enumerate() {
                    let lf = len as f64;
                    for i in len.saturating_sub(1)..n {
                        for l in 0..W {
                            mas[k * n + i][l] = tmp[k * n + i][l] / lf;
                        }
                    }
                }
            }
            Family::Wma => {
                for (k, &len) in lens.iter().enumerate() {
                    wma_row(x, len, &mut mas[k * n..(k + 1) * n]);
                }
            }
            Family::Dema => {
                tmp.fill(nan);
                ema_rows(&|_| x, &[0; K], lens, &mut *tmp, n);
                tmp2.fill(nan);
                let starts = lens.map(|l| l - 1);
                ema_rows(&|k| &tmp[k * n..(k + 1) * n], &starts, lens, &mut *tmp2, n);
                for i in 0..K * n {
                    for l in 0..W {
                        mas[i][l] = 2.0 * tmp[i][l] - tmp2[i][l];
                    }
                }
            }
            Family::Lsma => {
                prefix_sums::<W, true>(x, lens, &mut *tmp, &mut *tmp2, n);
                for (k, &len) in lens.iter().enumerate() {
                    let lf = len as f64;
                    let sx = (len * (len - 1) / 2) as f64;
                    let sxx = (len * (len - 1) * (2 * len - 1) / 6) as f64;
                    let den = lf * sxx - sx * sx;
                    for i in len.saturating_sub(1)..n {
                        let (sy, sxy) = (tmp[k * n + i], tmp2[k * n + i]);
                        for l in 0..W {
                            let slope = (lf * sxy[l] - sx * sy[l]) / den;
                            let intercept = (sy[l] - slope * sx) / lf;
                            mas[k * n + i][l] = intercept + slope * (lf - 1.0);
                        }
                    }
                }
            }
            Family::Kama => {
                // noise[i] (i >= len) is the sum of diffs[i−len ..= i−1]:
                // the window of `len` diffs ending at diff index i − 1.
                prefix_sums::<W, false>(&diffs, lens, &mut *tmp, &mut [], n);
                kama_rows(x, lens, &*tmp, &mut *mas, n);
            }
        }
        family_layers(
            x,
            &rg,
            &*mas,
            kp,
            f,
            &mut l1,
            &mut eq2,
            &mut avg_num,
            &mut avg_den,
        );
        if kp.keep {
            l1_rows.push(l1.clone());
            eq2_rows.push(eq2.clone());
        }
    }

    // Average signal and direction (spec sec. 12).
    let mut avg = vec![nan; n];
    for i in 0..n {
        for l in 0..W {
            avg[i][l] = avg_num[i][l] / avg_den[i][l];
        }
    }
    let mut dir = vec![[0.0; W]; n];
    let (lt, st) = (kp.long_threshold, kp.short_threshold);
    let mut state = [0.0; W];
    for i in 1..n {
        let (a, p) = (avg[i], avg[i - 1]);
        for l in 0..W {
            if a[l] > lt && p[l] <= lt {
                state[l] = 1.0;
            }
            if a[l] < st && p[l] >= st {
                state[l] = -1.0;
            }
        }
        dir[i] = state;
    }
    KernelOut {
        r: if kp.keep { r } else { Vec::new() },
        l1: l1_rows,
        eq2: eq2_rows,
        avg,
        dir,
    }
}

/// Nine EMAs advanced together bar by bar (`ta.ema`, and the inner EMA of
/// `ta.dema`): row k reads `input(k)` from bar `starts[k]`, is seeded at
/// bar `starts[k] + len − 1` with the oldest-first mean of its first `len`
/// values, then recurses `alpha·x + beta·prev` exactly like `ema_from`.
/// Rows must be NaN-filled by the caller.
#[inline(always)]
fn ema_rows<'a, const W: usize>(
    input: &dyn Fn(usize) -> &'a [[f64; W]],
    starts: &[usize; K],
    lens: &[usize; K],
    out: &mut [[f64; W]],
    n: usize,
) {
    let mut prev = [[0.0; W]; K];
    let mut seed = [usize::MAX; K];
    let mut alpha = [0.0; K];
    let mut beta = [0.0; K];
    let mut first = n;
    for k in 0..K {
        let len = lens[k];
        if starts[k] + len > n {
            continue;
        }
        let xs = input(k);
        seed[k] = starts[k] + len - 1;
        let mut s = [0.0; W];
        for v in &xs[starts[k]..=seed[k]] {
            for l in 0..W {
                s[l] += v[l];
            }
        }
        for l in 0..W {
            prev[k][l] = s[l] / len as f64;
        }
        out[k * n + seed[k]] = prev[k];
        alpha[k] = 2.0 / (len as f64 + 1.0);
        beta[k] = 1.0 - alpha[k];
        first = first.min(seed[k] + 1);
    }
    let inputs: [&[[f64; W]]; K] = std::array::from_fn(input);
    for i in first..n {
        for k in 0..K {
            if i > seed[k] {
                let xi = inputs[k][i];
                for l in 0..W {
                    prev[k][l] = alpha[k] * xi[l] + beta[k] * prev[k][l];
                }
                out[k * n + i] = prev[k];
            }
        }
    }
}

/// For every length k, `sums[k·n + e]` = the oldest-first sum of
/// `y[e+1−len ..= e]` (and with `XY`, `sxy[k·n + e]` = Σ j·y_j over the
/// same window, j from 0 at the oldest), for every window that fits in `y`.
///
/// One running sum per start bar serves all nine lengths: the sum of the
/// first m terms of a window is the same f64 whatever length the window
/// finally has, because it is the same additions in the same order.
/// [`STARTS`] consecutive start bars run side by side for parallelism.
#[inline(always)]
fn prefix_sums<const W: usize, const XY: bool>(
    y: &[[f64; W]],
    lens: &[usize; K],
    sums: &mut [[f64; W]],
    sxy: &mut [[f64; W]],
    n: usize,
) {
    let m = y.len();
    let lmax = lens.iter().copied().max().unwrap_or(0);
    // ends[j]: bitmask of the lengths whose window ends after j+1 terms.
    let mut ends = vec![0u16; lmax];
    for (k, &len) in lens.iter().enumerate() {
        if len >= 1 {
            ends[len - 1] |= 1 << k;
        }
    }
    let mut s = 0;
    while s + STARTS + lmax <= m + 1 && lmax > 0 {
        let mut acc = [[0.0f64; W]; STARTS];
        let mut accxy = [[0.0f64; W]; STARTS];
        for (j, &mask) in ends.iter().enumerate() {
            let jf = j as f64;
            for b in 0..STARTS {
                let v = y[s + b + j];
                for l in 0..W {
                    acc[b][l] += v[l];
                    if XY {
                        accxy[b][l] += jf * v[l];
                    }
                }
            }
            if mask != 0 {
                for k in 0..K {
                    if mask & (1 << k) != 0 {
                        for b in 0..STARTS {
                            sums[k * n + s + b + j] = acc[b];
                            if XY {
                                sxy[k * n + s + b + j] = accxy[b];
                            }
                        }
                    }
                }
            }
        }
        s += STARTS;
    }
    // The last starts, whose longer windows run past the end.
    while s < m {
        let mut acc = [0.0f64; W];
        let mut accxy = [0.0f64; W];
        for (j, &mask) in ends.iter().enumerate().take(m - s) {
            let jf = j as f64;
            let v = y[s + j];
            for l in 0..W {
                acc[l] += v[l];
                if XY {
                    accxy[l] += jf * v[l];
                }
            }
            for k in 0..K {
                if mask & (1 << k) != 0 {
                    sums[k * n + s + j] = acc;
                    if XY {
                        sxy[k * n + s + j] = accxy;
                    }
                }
            }
        }
        s += 1;
    }
}

/// `ta.wma` for one length: newest weight `len`, summed newest first as
/// the single-series engine does; [`STARTS`] bars side by side.
#[inline(always)]
fn wma_row<const W: usize>(x: &[[f64; W]], len: usize, out: &mut [[f64; W]]) {
    let n = x.len();
    if len == 0 || len > n {
        return;
    }
    let denom = (len * (len + 1) / 2) as f64;
    let mut i = len - 1;
    while i + STARTS <= n {
        let mut acc = [[0.0f64; W]; STARTS];
        for j in 0..len {
            let wgt = (len - j) as f64;
            for b in 0..STARTS {
                let v = x[i + b - j];
                for l in 0..W {
                    acc[b][l] += wgt * v[l];
                }
            }
        }
        for b in 0..STARTS {
            for l in 0..W {
                out[i + b][l] = acc[b][l] / denom;
            }
        }
        i += STARTS;
    }
    for i in i..n {
        let mut acc = [0.0f64; W];
        for j in 0..len {
            let wgt = (len - j) as f64;
            for l in 0..W {
                acc[l] += wgt * x[i - j][l];
            }
        }
        for l in 0..W {
            out[i][l] = acc[l] / denom;
        }
    }
}

/// The script's KAMA for nine lengths advanced together; `noise` holds the
/// diff window sums from [`prefix_sums`] (row k, indexed by diff index).
#[inline(always)]
fn kama_rows<const W: usize>(
    x: &[[f64; W]],
    lens: &[usize; K],
    noise: &[[f64; W]],
    out: &mut [[f64; W]],
    n: usize,
) {
    let span = KAMA_FAST - KAMA_SLOW;
    let mut kv = [[0.0f64; W]; K];
    for i in 0..n {
        for k in 0..K {
            let len = lens[k];
            let mut ratio = [0.0; W];
            if i >= len && len > 0 {
                let nz = noise[k * n + i - 1];
                for l in 0..W {
                    let signal = (x[i][l] - x[i - len][l]).abs();
                    let q = signal / nz[l];
                    ratio[l] = if nz[l] != 0.0 { q } else { 0.0 };
                }
            }
            for l in 0..W {
                let sc = ratio[l] * span + KAMA_SLOW;
                let smooth = sc * sc;
                kv[k][l] += smooth * (x[i][l] - kv[k][l]);
            }
            out[k * n + i] = kv[k];
        }
    }
}

/// Cross signals, layer-1 equities and family signal, layer-2 equity, and
/// the family's term of the average signal, all in one pass over the bars
/// (spec sec. 7–12), with the exact operations of `cross_signal`,
/// `family_layer1`, `round2`, `equity_into` and `layers`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn family_layers<const W: usize>(
    x: &[[f64; W]],
    rg: &[[f64; W]],
    mas: &[[f64; W]],
    kp: &KernelParams,
    f: Family,
    l1_out: &mut [[f64; W]],
    eq2_out: &mut [[f64; W]],
    avg_num: &mut [[f64; W]],
    avg_den: &mut [[f64; W]],
) {
    let n = x.len();
    let (d, cutout, start) = (kp.d, kp.cutout, kp.start);
    let w = kp.weights[f.index()];
    let nan = [f64::NAN; W];
    let mut s = [[0.0f64; W]; K];
    let mut a = [[0.0f64; W]; K];
    let mut e = [nan; K];
    let mut a2 = [0.0f64; W];
    let mut e2 = nan;
    for i in 0..n {
        let xi = x[i];
        let r = rg[i];
        let mut nm = [0.0f64; W];
        let mut dn = [0.0f64; W];
        let active = i >= cutout;
        for k in 0..K {
            let p = s[k];
            if i >= 1 {
                let (m, mp, xp) = (mas[k * n + i], mas[k * n + i - 1], x[i - 1]);
                let mut sk = s[k];
                for l in 0..W {
                    if xi[l] > m[l] && xp[l] <= mp[l] {
                        sk[l] = 1.0;
                    }
                    if xi[l] < m[l] && xp[l] >= mp[l] {
                        sk[l] = -1.0;
                    }
                }
                s[k] = sk;
            }
            if active {
                let mut v = [0.0; W];
                for l in 0..W {
                    if i > 0 {
                        let neg = -r[l];
                        a[k][l] = if p[l] > 0.0 {
                            r[l]
                        } else if p[l] < 0.0 {
                            neg
                        } else {
                            a[k][l]
                        };
                    }
                    let grown = (e[k][l] * d) * (1.0 + a[k][l]);
                    let vv = if i == cutout { start } else { grown };
                    v[l] = if vv < 0.25 { 0.25 } else { vv };
                    nm[l] += s[k][l] * v[l];
                    dn[l] += v[l];
                }
                e[k] = v;
            }
        }
        // Layer 2 reads the family signal of the previous bar.
        let l1_prev = if i == 0 { nan } else { l1_out[i - 1] };
        if active {
            let mut l1 = [0.0; W];
            let mut v = [0.0; W];
            for l in 0..W {
                l1[l] = floor_exact((nm[l] / dn[l]) * 100.0 + 0.5) / 100.0;
                let p = l1_prev[l];
                a2[l] = if p > 0.0 {
                    r[l]
                } else if p < 0.0 {
                    -r[l]
                } else {
                    a2[l]
                };
                let grown = (e2[l] * d) * (1.0 + a2[l]);
                let vv = if e2[l].is_nan() { w } else { grown };
                v[l] = if vv < 0.25 { 0.25 } else { vv };
            }
            e2 = v;
            l1_out[i] = l1;
            eq2_out[i] = v;
        } else {
            l1_out[i] = nan;
            eq2_out[i] = nan;
        }
        let (l1, e2v) = (l1_out[i], eq2_out[i]);
        for l in 0..W {
            let c = if l1[l] > 0.49 {
                1.0
            } else if l1[l] < -0.49 {
                -1.0
            } else {
                0.0
            };
            avg_num[i][l] += c * e2v[l];
            avg_den[i][l] += e2v[l];
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
}
