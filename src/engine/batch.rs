//! The batched ATC engine: several symbols in lock-step, one SIMD lane per
//! symbol, bit-identical to the single-series engine ([`super::compute`]).
//!
//! # Why lanes are symbols
//!
//! Every number the golden vectors check, and every cross and rounding
//! decision downstream, depends on the exact bits of the single-series
//! engine. Reordering a sum or fusing a multiply-add would change them. So
//! the batch never changes *which* operations a series sees or their order;
//! it only runs [`BATCH_LANES`] series side by side ([`BATCH_LANES_AVX512`]
//! on a CPU with AVX-512F): the state of the
//! engine becomes `[f64; W]` instead of `f64`, and every step is a plain
//! loop over the lanes that LLVM turns into vector instructions, or, where
//! its vectoriser gave up (selects, divisions), the same operations written
//! on the explicit vectors of `lanes.rs` (SSE2 on the baseline target, AVX2
//! or AVX-512F when the CPU has it, chosen at run time; every path performs
//! the same IEEE operations per lane, so they give the same bits). Branches
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

use super::atc::{
    compute_unchecked_par, validate_close, AtcOutput, Detail, SignalBank, LENGTHS_PER_FAMILY,
    MA_COUNT,
};
use super::error::EngineError;
use super::lanes::{Arr, Lanes};
#[cfg(target_arch = "x86_64")]
use super::lanes::{Avx, Avx512};
use super::ma::{KAMA_FAST, KAMA_SLOW};
use super::params::{AtcParams, Family};

/// Symbols per batch on the AVX2 and baseline paths: one f64 lane each.
/// Four lanes are one AVX2 register (two SSE2 registers); more lanes would
/// only add register pressure to the nine-way interleaved recurrences.
pub const BATCH_LANES: usize = 4;

/// Symbols per batch on the AVX-512 path: one 512-bit register, and
/// AVX-512's 32 vector registers hold the wider recurrence state.
pub const BATCH_LANES_AVX512: usize = 8;

/// Window start bars summed side by side in the shared-prefix sums, so each
/// lane has several independent addition chains in flight. The LSMA keeps
/// two sums per start, so four starts already give eight chains.
const STARTS: usize = 4;

/// Start bars side by side for one-sum windows (SMA, KAMA noise, WMA):
/// an add has a latency of several cycles and two issue ports, so four
/// chains left the adders idle about a third of the time; eight still fit
/// in the sixteen vector registers.
const WIDE_STARTS: usize = 8;

/// Sets the first `warm` bars (at most `n`) of each of the nine rows of
/// `rows` to NaN: the bars before an MA's first valid value.
#[inline(always)]
fn nan_prefix<const W: usize>(rows: &mut [[f64; W]], n: usize, warm: usize) {
    for k in 0..K {
        rows[k * n..k * n + warm.min(n)].fill([f64::NAN; W]);
    }
}

const K: usize = LENGTHS_PER_FAMILY;

/// Which instruction set the kernels may use. Every path gives identical
/// bits; the choice only exists so tests can prove it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// The best the running CPU supports: AVX-512F ([`BATCH_LANES_AVX512`]
    /// lanes), else AVX2, else the baseline.
    Auto,
    /// AVX2 ([`BATCH_LANES`] lanes) even where AVX-512F is available; the
    /// baseline where AVX2 is not.
    Avx2,
    /// The baseline target only (SSE2 on x86-64).
    Baseline,
}

/// The kernel a call runs on, resolved from [`Isa`] and the CPU.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Path {
    Baseline,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Path {
    pub(super) fn resolve(isa: Isa) -> Path {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = std::arch::is_x86_feature_detected!("avx2");
            let avx512 = std::arch::is_x86_feature_detected!("avx512f");
            match isa {
                Isa::Auto if avx512 => return Path::Avx512,
                Isa::Auto | Isa::Avx2 if avx2 => return Path::Avx2,
                _ => {}
            }
        }
        let _ = isa;
        Path::Baseline
    }
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
/// [`BATCH_LANES`] (with AVX-512F [`BATCH_LANES_AVX512`]) symbols per SIMD pass and batches in parallel on the
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
    let run = |chunk: &[usize]| -> Option<Vec<(usize, AtcOutput)>> {
        // A lone series would fill one lane of four or eight; the
        // single-series engine (lane-parallel across bars) gives the same
        // bits faster, and runs its six families as parallel tasks, so one
        // long series still uses every thread (idle ones steal them; busy
        // ones run them inline).
        (chunk.len() == 1).then(|| vec![(chunk[0], single(closes[chunk[0]], params, kp.keep))])
    };
    let results: Vec<Vec<(usize, AtcOutput)>> = match Path::resolve(isa) {
        // SAFETY (both arms): `Path::resolve` picks these paths only when
        // the CPU reports the kernel's target features.
        #[cfg(target_arch = "x86_64")]
        Path::Avx512 => batches::<BATCH_LANES_AVX512, _>(
            &ok,
            closes,
            &growth,
            &kp,
            &run,
            &|x, g, kp, sc| unsafe { kernel_avx512(x, g, kp, sc) },
        ),
        #[cfg(target_arch = "x86_64")]
        Path::Avx2 => {
            batches::<BATCH_LANES, _>(&ok, closes, &growth, &kp, &run, &|x, g, kp, sc| unsafe {
                kernel_avx2(x, g, kp, sc)
            })
        }
        Path::Baseline => batches::<BATCH_LANES, _>(
            &ok,
            closes,
            &growth,
            &kp,
            &run,
            &kernel::<BATCH_LANES, Arr<BATCH_LANES>>,
        ),
    };
    let results = results.into_iter().flatten();
    for (i, o) in results {
        out[i] = Some(Ok(o));
    }
    Ok(out
        .into_iter()
        .map(|o| o.unwrap_or(Err(EngineError::EmptySeries)))
        .collect())
}

/// A kernel entry point for `W` lanes.
type KernelFn<const W: usize> =
    dyn Fn(&[[f64; W]], &[f64], &KernelParams, &mut Scratch<W>) -> KernelOut<W> + Sync;

/// Cuts the validated, length-sorted series `ok` into batches of `W` and
/// runs them in parallel on the current rayon pool, each with its worker's
/// scratch buffers; `lone` handles a batch of one series.
fn batches<const W: usize, L>(
    ok: &[usize],
    closes: &[&[f64]],
    growth: &[f64],
    kp: &KernelParams,
    lone: &L,
    kern: &KernelFn<W>,
) -> Vec<Vec<(usize, AtcOutput)>>
where
    L: Fn(&[usize]) -> Option<Vec<(usize, AtcOutput)>> + Sync,
{
    ok.par_chunks(W)
        .map_init(Scratch::<W>::default, |scratch, chunk| {
            if let Some(o) = lone(chunk) {
                return o;
            }
            let series: Vec<&[f64]> = chunk.iter().map(|&i| closes[i]).collect();
            let outs = run_kernel::<W>(&series, growth, kp, kern, scratch);
            chunk.iter().copied().zip(outs).collect()
        })
        .collect()
}

/// The single-series engine's output, trimmed to what `keep` asks for.
fn single(close: &[f64], params: &AtcParams, keep: bool) -> AtcOutput {
    let mut o = compute_unchecked_par(close, params, Detail::Signal);
    if !keep {
        o.r = Vec::new();
        o.l1 = Vec::new();
        o.eq2 = Vec::new();
    }
    o
}

/// Buffers a worker reuses from batch to batch: fresh allocations would be
/// fresh pages, and faulting them in cost about 15% of the kernel's time
/// (and the page faults of two threads contend in one address space).
struct Scratch<const W: usize> {
    /// The nine MA rows of the current family.
    mas: Vec<[f64; W]>,
    /// Nine rows of window sums or the DEMA's outer EMA.
    tmp: Vec<[f64; W]>,
    /// The closes in lane layout.
    x: Vec<[f64; W]>,
    /// [`BAR_ROWS`] rows of one value per bar (see [`bar_rows`]).
    bars: Vec<[f64; W]>,
    /// The shared stage's signals of a family as lane bits.
    masks: Vec<u16>,
}

impl<const W: usize> Default for Scratch<W> {
    fn default() -> Self {
        Scratch {
            mas: Vec::new(),
            tmp: Vec::new(),
            x: Vec::new(),
            bars: Vec::new(),
            masks: Vec::new(),
        }
    }
}

/// Per-bar rows in [`Scratch::bars`]: R, up, down, the average signal's
/// numerator and denominator, a family's L1 and eq2, the KAMA diffs, and
/// the outputs avg and dir (the last two are read after the kernel).
const BAR_ROWS: usize = 10;
const AVG_ROW: usize = 8;
const DIR_ROW: usize = 9;

/// Splits `bars` (resized to [`BAR_ROWS`] rows of `n`) into its rows.
fn bar_rows<const W: usize>(bars: &mut Vec<[f64; W]>, n: usize) -> [&mut [[f64; W]]; BAR_ROWS] {
    bars.resize(BAR_ROWS * n, [f64::NAN; W]);
    let mut rest = bars.as_mut_slice();
    std::array::from_fn(|_| {
        let (row, tail) = std::mem::take(&mut rest).split_at_mut(n);
        rest = tail;
        row
    })
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

/// Packs up to `W` non-empty series into `x` in lane layout, as long as
/// the longest; shorter series are padded with their last close (see the
/// module doc) and empty lanes repeat the first series (wasted but
/// harmless work).
fn pack_lanes<const W: usize>(series: &[&[f64]], x: &mut Vec<[f64; W]>) {
    let n = series.iter().map(|s| s.len()).max().unwrap_or(0);
    x.resize(n, [0.0; W]);
    for l in 0..W {
        let s = series.get(l).unwrap_or(&series[0]);
        let last = s[s.len() - 1];
        for (i, v) in x.iter_mut().enumerate() {
            v[l] = s.get(i).copied().unwrap_or(last);
        }
    }
}

/// Packs up to `W` series into lanes (padding as the module doc explains),
/// runs the kernel and unpacks one output per series.
fn run_kernel<const W: usize>(
    series: &[&[f64]],
    growth: &[f64],
    kp: &KernelParams,
    kern: &KernelFn<W>,
    scratch: &mut Scratch<W>,
) -> Vec<AtcOutput> {
    let n = series.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut x = std::mem::take(&mut scratch.x);
    pack_lanes(series, &mut x);
    let k = kern(&x, growth, kp, scratch);
    scratch.x = x;
    let avg = &scratch.bars[AVG_ROW * n..(AVG_ROW + 1) * n];
    let dir = &scratch.bars[DIR_ROW * n..(DIR_ROW + 1) * n];
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
                avg: col(avg),
                dir: dir[..m].iter().map(|e| e[l] as i8).collect(),
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

/// Kernel outputs in lane layout that only [`BatchDetail::Signal`] keeps
/// (empty otherwise); avg and dir are left in the scratch rows.
struct KernelOut<const W: usize> {
    r: Vec<[f64; W]>,
    l1: Vec<Vec<[f64; W]>>,
    eq2: Vec<Vec<[f64; W]>>,
}

/// The same kernel compiled with AVX2 enabled, with [`Avx`] vectors for
/// the steps written on [`Lanes`]. AVX2 has no instruction that changes an
/// IEEE result (Rust never contracts to FMA), so the bits match the
/// baseline path.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn kernel_avx2(
    x: &[[f64; 4]],
    growth: &[f64],
    kp: &KernelParams,
    sc: &mut Scratch<4>,
) -> KernelOut<4> {
    kernel::<4, Avx>(x, growth, kp, sc)
}

/// The kernel compiled with AVX-512F enabled, eight lanes, with [`Avx512`]
/// vectors for the steps written on [`Lanes`]. Like AVX2, AVX-512F changes
/// no IEEE result (no FMA contraction), so the bits match the other paths.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn kernel_avx512(
    x: &[[f64; 8]],
    growth: &[f64],
    kp: &KernelParams,
    sc: &mut Scratch<8>,
) -> KernelOut<8> {
    kernel::<8, Avx512>(x, growth, kp, sc)
}

/// The whole ATC for `W` lanes of equal length. `inline(always)` so that
/// [`kernel_avx2`] gets its own AVX2 copy of everything.
#[inline(always)]
fn kernel<const W: usize, V: Lanes<W>>(
    x: &[[f64; W]],
    growth: &[f64],
    kp: &KernelParams,
    sc: &mut Scratch<W>,
) -> KernelOut<W> {
    let n = x.len();
    let nan = [f64::NAN; W];
    let cutout = kp.cutout;

    let [r, up, down, avg_num, avg_den, l1, eq2, diffs, avg, dir] = bar_rows(&mut sc.bars, n);
    // Rate of change and growth-scaled returns (spec sec. 6).
    r[0] = nan;
    for i in 1..n {
        for l in 0..W {
            r[i][l] = (x[i][l] - x[i - 1][l]) / x[i - 1][l];
        }
    }
    // The layer-1 and layer-2 equity factors `1 + a` for a = ±rg, with
    // rg = R·g the growth-scaled return, shared by all 60 equity curves
    // (see `family_layers`); rg itself is not kept.
    up[..cutout.min(n)].fill(nan);
    down[..cutout.min(n)].fill(nan);
    for i in cutout..n {
        let g = growth[i - cutout];
        for l in 0..W {
            let rg = r[i][l] * g;
            up[i][l] = 1.0 + rg;
            down[i][l] = 1.0 + (-rg);
        }
    }

    // The buffers keep whatever the previous batch left: every producer
    // below writes each row from its first valid bar on, so only the
    // warm-up prefix of a row must be NaN, refilled per family by
    // `nan_prefix` (refilling whole rows cost ~3% of the kernel).
    // Two buffers of nine rows only (a third one pushed a worker's working
    // set past its L2 with eight lanes): the DEMA's inner EMA and the LSMA's
    // Σ j·y go to `mas` and are finished there in place.
    for v in [&mut sc.mas, &mut sc.tmp] {
        v.resize(K * n, nan);
    }
    let (mas, tmp) = (sc.mas.as_mut_slice(), sc.tmp.as_mut_slice());
    avg_num.fill([0.0; W]);
    avg_den.fill([0.0; W]);
    let mut l1_rows = Vec::new();
    let mut eq2_rows = Vec::new();
    // |x[j+1] − x[j]| for the KAMA noise; computed once for nine lengths.
    let diffs = &mut diffs[..n - 1];
    for (o, w) in diffs.iter_mut().zip(x.windows(2)) {
        for l in 0..W {
            o[l] = (w[1][l] - w[0][l]).abs();
        }
    }

    for f in Family::ALL {
        family_mas::<W, V>(f, x, &kp.lens[f.index()], diffs, mas, tmp);
        family_layers::<W, V>(x, up, down, &*mas, kp, f, l1, eq2, avg_num, avg_den);
        if kp.keep {
            l1_rows.push(l1.to_vec());
            eq2_rows.push(eq2.to_vec());
        }
    }

    // Average signal and direction (spec sec. 12).
    for i in 0..n {
        for l in 0..W {
            avg[i][l] = avg_num[i][l] / avg_den[i][l];
        }
    }
    dir[0] = [0.0; W];
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
        r: if kp.keep { r.to_vec() } else { Vec::new() },
        l1: l1_rows,
        eq2: eq2_rows,
    }
}

/// The nine moving averages of family `f` into the nine rows of `mas`
/// (`n = x.len()` bars each, NaN before each row's first valid bar), with
/// `tmp` as a second nine-row buffer and `diffs` the KAMA's
/// `|x[j+1] − x[j]|` (spec sec. 5, the operations of `ma.rs`).
#[inline(always)]
fn family_mas<const W: usize, V: Lanes<W>>(
    f: Family,
    x: &[[f64; W]],
    lens: &[usize; K],
    diffs: &[[f64; W]],
    mas: &mut [[f64; W]],
    tmp: &mut [[f64; W]],
) {
    let n = x.len();
    // The longest warm-up of a row: DEMA's 2·len − 2 bars.
    let warm = 2 * lens.iter().copied().max().unwrap_or(0);
    nan_prefix(mas, n, warm);
    match f {
        Family::Ema => ema_rows::<W, V>(&|_| x, &[0; K], lens, &mut *mas, n),
        Family::Hma => {
            prefix_sums::<W, false, WIDE_STARTS>(x, lens, &mut *tmp, &mut [], n);
            for (k, &len) in lens.iter().enumerate() {
                let lf = len as f64;
                let rows = mas[k * n..(k + 1) * n]
                    .iter_mut()
                    .zip(&tmp[k * n..(k + 1) * n]);
                let lfv = V::splat(lf);
                for (o, sum) in rows.skip(len.saturating_sub(1)) {
                    *o = V::load(sum).div(lfv).store();
                }
            }
        }
        Family::Wma => {
            for (k, &len) in lens.iter().enumerate() {
                wma_row(x, len, &mut mas[k * n..(k + 1) * n]);
            }
        }
        Family::Dema => {
            nan_prefix(tmp, n, warm);
            ema_rows::<W, V>(&|_| x, &[0; K], lens, &mut *tmp, n);
            let starts = lens.map(|l| l - 1);
            ema_rows::<W, V>(&|k| &tmp[k * n..(k + 1) * n], &starts, lens, &mut *mas, n);
            // mas holds e2; DEMA = 2·e1 − e2, in place.
            let two = V::splat(2.0);
            for (o, e1) in mas.iter_mut().zip(&*tmp) {
                *o = two.mul(V::load(e1)).sub(V::load(o)).store();
            }
        }
        Family::Lsma => {
            // Σy to tmp, Σ j·y to mas; the line then replaces Σ j·y.
            prefix_sums::<W, true, STARTS>(x, lens, &mut *tmp, &mut *mas, n);
            for (k, &len) in lens.iter().enumerate() {
                let lf = len as f64;
                let sx = (len * (len - 1) / 2) as f64;
                let sxx = (len * (len - 1) * (2 * len - 1) / 6) as f64;
                let den = lf * sxx - sx * sx;
                let row = k * n..(k + 1) * n;
                let rows = mas[row.clone()].iter_mut().zip(&tmp[row]);
                let (lfv, sxv, denv) = (V::splat(lf), V::splat(sx), V::splat(den));
                let lm1 = V::splat(lf - 1.0);
                for (o, sy) in rows.skip(len.saturating_sub(1)) {
                    let (sy, sxy) = (V::load(sy), V::load(o));
                    // slope = (L·Sxy − Sx·Sy) / den; intercept =
                    // (Sy − slope·Sx) / L; value = intercept + slope·(L − 1).
                    let slope = lfv.mul(sxy).sub(sxv.mul(sy)).div(denv);
                    let intercept = sy.sub(slope.mul(sxv)).div(lfv);
                    *o = intercept.add(slope.mul(lm1)).store();
                }
            }
        }
        Family::Kama => {
            // noise[i] (i >= len) is the sum of diffs[i−len ..= i−1]:
            // the window of `len` diffs ending at diff index i − 1.
            prefix_sums::<W, false, WIDE_STARTS>(diffs, lens, &mut *tmp, &mut [], n);
            kama_rows::<W, V>(x, lens, &*tmp, &mut *mas, n);
        }
    }
}

/// Nine EMAs advanced together bar by bar (`ta.ema`, and the inner EMA of
/// `ta.dema`): row k reads `input(k)` from bar `starts[k]`, is seeded at
/// bar `starts[k] + len − 1` with the oldest-first mean of its first `len`
/// values, then recurses `alpha·x + beta·prev` exactly like `ema_from`.
/// The bars of a row before its seed must be NaN-filled by the caller.
#[inline(always)]
fn ema_rows<'a, const W: usize, V: Lanes<W>>(
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
    let (av, bv): ([V; K], [V; K]) = (alpha.map(V::splat), beta.map(V::splat));
    let mut pv: [V; K] = std::array::from_fn(|k| V::load(&prev[k]));
    // From the last seed on, every row advances: no per-row test. (A row
    // that never seeds has seed usize::MAX, so `all` is then n.)
    let all = seed
        .iter()
        .copied()
        .max()
        .map_or(n, |s| s.saturating_add(1))
        .min(n);
    for i in first..all {
        for k in 0..K {
            if i > seed[k] {
                pv[k] = av[k].mul(V::load(&inputs[k][i])).add(bv[k].mul(pv[k]));
                out[k * n + i] = pv[k].store();
            }
        }
    }
    for i in all..n {
        for k in 0..K {
            pv[k] = av[k].mul(V::load(&inputs[k][i])).add(bv[k].mul(pv[k]));
            out[k * n + i] = pv[k].store();
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
/// `S` consecutive start bars run side by side for parallelism.
#[inline(always)]
fn prefix_sums<const W: usize, const XY: bool, const S: usize>(
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
    while s + S + lmax <= m + 1 && lmax > 0 {
        let mut acc = [[0.0f64; W]; S];
        let mut accxy = [[0.0f64; W]; S];
        for (j, &mask) in ends.iter().enumerate() {
            let jf = j as f64;
            for b in 0..S {
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
                        for b in 0..S {
                            sums[k * n + s + b + j] = acc[b];
                            if XY {
                                sxy[k * n + s + b + j] = accxy[b];
                            }
                        }
                    }
                }
            }
        }
        s += S;
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
/// the single-series engine does; [`WIDE_STARTS`] bars side by side.
#[inline(always)]
fn wma_row<const W: usize>(x: &[[f64; W]], len: usize, out: &mut [[f64; W]]) {
    let n = x.len();
    if len == 0 || len > n {
        return;
    }
    let denom = (len * (len + 1) / 2) as f64;
    let mut i = len - 1;
    while i + WIDE_STARTS <= n {
        let mut acc = [[0.0f64; W]; WIDE_STARTS];
        for j in 0..len {
            let wgt = (len - j) as f64;
            for b in 0..WIDE_STARTS {
                let v = x[i + b - j];
                for l in 0..W {
                    acc[b][l] += wgt * v[l];
                }
            }
        }
        for b in 0..WIDE_STARTS {
            for l in 0..W {
                out[i + b][l] = acc[b][l] / denom;
            }
        }
        i += WIDE_STARTS;
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
fn kama_rows<const W: usize, V: Lanes<W>>(
    x: &[[f64; W]],
    lens: &[usize; K],
    noise: &[[f64; W]],
    out: &mut [[f64; W]],
    n: usize,
) {
    let (zero, span, slow) = (
        V::splat(0.0),
        V::splat(KAMA_FAST - KAMA_SLOW),
        V::splat(KAMA_SLOW),
    );
    let mut kv = [zero; K];
    for i in 0..n {
        let xi = V::load(&x[i]);
        for k in 0..K {
            let len = lens[k];
            let mut ratio = zero;
            if i >= len && len > 0 {
                let nz = V::load(&noise[k * n + i - 1]);
                let signal = xi.sub(V::load(&x[i - len])).abs();
                // noise != 0 ? signal / noise : 0 (NaN noise takes the quotient).
                ratio = V::select(nz.eq(zero), zero, signal.div(nz));
            }
            let sc = ratio.mul(span).add(slow);
            let smooth = sc.mul(sc);
            kv[k] = kv[k].add(smooth.mul(xi.sub(kv[k])));
            out[k * n + i] = kv[k].store();
        }
    }
}

/// Updates the nine persistent cross signals of a family at bar `i >= 1`
/// (spec sec. 7, the operations of `cross_signal`).
#[inline(always)]
fn update_signals<const W: usize, V: Lanes<W>>(
    s: &mut [V; K],
    x: &[[f64; W]],
    mas: &[[f64; W]],
    i: usize,
    n: usize,
) {
    let (xi, xp) = (V::load(&x[i]), V::load(&x[i - 1]));
    let (one, minus_one) = (V::splat(1.0), V::splat(-1.0));
    for (k, sk) in s.iter_mut().enumerate() {
        let (m, mp) = (V::load(&mas[k * n + i]), V::load(&mas[k * n + i - 1]));
        let over = V::and(xi.gt(m), xp.le(mp));
        let under = V::and(xi.lt(m), xp.ge(mp));
        *sk = V::select(under, minus_one, V::select(over, one, *sk));
    }
}

/// Adds a family's term `Cut(L1)·eq2` and `eq2` to the average signal's
/// numerator and denominator (spec sec. 12), families in spec order.
#[inline(always)]
fn add_avg_term<const W: usize, V: Lanes<W>>(l1: V, e2: V, num: &mut [f64; W], den: &mut [f64; W]) {
    let (hi, lo) = (V::splat(0.49), V::splat(-0.49));
    let c = V::select(
        l1.gt(hi),
        V::splat(1.0),
        V::select(l1.lt(lo), V::splat(-1.0), V::splat(0.0)),
    );
    *num = V::load(num).add(c.mul(e2)).store();
    *den = V::load(den).add(e2).store();
}

/// `round2` lane-wise: `floor(x·100 + 0.5) / 100`.
#[inline(always)]
fn round2_lanes<const W: usize, V: Lanes<W>>(x: V) -> V {
    let h = V::splat(100.0);
    x.mul(h).add(V::splat(0.5)).floor_exact().div(h)
}

/// Cross signals, layer-1 equities and family signal, layer-2 equity, and
/// the family's term of the average signal, all in one pass over the bars
/// (spec sec. 7–12), with the exact operations of `cross_signal`,
/// `family_layer1`, `round2`, `equity_into` and `layers`.
///
/// The bars are split into three phases (before `cutout`, the first active
/// bar, the rest) so the hot loop has no bar-index branches, and every
/// per-lane decision is a select on [`Lanes`] vectors.
///
/// The equity factor `1 + a` is taken from the per-bar rows `up = 1 + rg`
/// and `down = 1 + (−rg)`: in layer 1 `a` is `rg` or `−rg` after a ±1
/// signal and still its initial `0.0` while the signal is 0 (a signal never
/// returns to 0), so the factor is `up`, `down` or exactly `1.0`, the same
/// f64 as `1.0 + a`. In layer 2 an L1 of 0 keeps the previous `a`, so the
/// previous factor is kept instead (a pure function of `a`).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn family_layers<const W: usize, V: Lanes<W>>(
    x: &[[f64; W]],
    up: &[[f64; W]],
    down: &[[f64; W]],
    mas: &[[f64; W]],
    kp: &KernelParams,
    f: Family,
    l1_out: &mut [[f64; W]],
    eq2_out: &mut [[f64; W]],
    avg_num: &mut [[f64; W]],
    avg_den: &mut [[f64; W]],
) {
    let n = x.len();
    let cutout = kp.cutout;
    let w = kp.weights[f.index()];
    let nan = V::splat(f64::NAN);
    let (zero, one, minus_one) = (V::splat(0.0), V::splat(1.0), V::splat(-1.0));
    let (d, quarter) = (V::splat(kp.d), V::splat(0.25));
    let mut s = [zero; K];
    let first = cutout.min(n);
    // Before the first active bar: signals only; L1, eq2 and avg are na.
    for i in 0..first {
        if i >= 1 {
            update_signals(&mut s, x, mas, i, n);
        }
        l1_out[i] = nan.store();
        eq2_out[i] = nan.store();
        add_avg_term(nan, nan, &mut avg_num[i], &mut avg_den[i]);
    }
    if first == n {
        return;
    }
    // The first active bar: every equity is its (floored) start and layer
    // 2 reads an na L1, so its `a` keeps the initial 0.0.
    let i = cutout;
    if i >= 1 {
        update_signals(&mut s, x, mas, i, n);
    }
    let v0 = V::splat(kp.start).floor_at(quarter);
    let mut e = [v0; K];
    let (mut nm, mut dn) = (zero, zero);
    for k in 0..K {
        nm = nm.add(s[k].mul(e[k]));
        dn = dn.add(e[k]);
    }
    let mut l1_prev = round2_lanes(nm.div(dn));
    let mut e2 = V::splat(w).floor_at(quarter);
    let mut f2 = one.add(zero);
    l1_out[i] = l1_prev.store();
    eq2_out[i] = e2.store();
    add_avg_term(l1_prev, e2, &mut avg_num[i], &mut avg_den[i]);
    for i in cutout + 1..n {
        let (xi, xp) = (V::load(&x[i]), V::load(&x[i - 1]));
        let (u, dw) = (V::load(&up[i]), V::load(&down[i]));
        let (mut nm, mut dn) = (zero, zero);
        for k in 0..K {
            let (m, mp) = (V::load(&mas[k * n + i]), V::load(&mas[k * n + i - 1]));
            let p = s[k];
            let over = V::and(xi.gt(m), xp.le(mp));
            let under = V::and(xi.lt(m), xp.ge(mp));
            let sk = V::select(under, minus_one, V::select(over, one, p));
            let fac = V::select(p.gt(zero), u, V::select(p.lt(zero), dw, one));
            let v = e[k].mul(d).mul(fac).floor_at(quarter);
            nm = nm.add(sk.mul(v));
            dn = dn.add(v);
            s[k] = sk;
            e[k] = v;
        }
        // Layer 2 reads the family signal of the previous bar.
        let l1 = round2_lanes(nm.div(dn));
        f2 = V::select(l1_prev.gt(zero), u, V::select(l1_prev.lt(zero), dw, f2));
        e2 = e2.mul(d).mul(f2).floor_at(quarter);
        l1_out[i] = l1.store();
        eq2_out[i] = e2.store();
        add_avg_term(l1, e2, &mut avg_num[i], &mut avg_den[i]);
        l1_prev = l1;
    }
}

/// The shared stage of one series: `R` and the 54 cross signals in the
/// layout [`LayerLanes`](super::LayerLanes) reads (family, then bar, then the nine lengths).
#[derive(Debug, Clone, PartialEq)]
pub struct SharedSignals {
    pub(super) n: usize,
    /// Rate of change `R` (NaN at bar 0), `n` bars.
    pub(super) r: Vec<f64>,
    /// `sig[(f·n + i)·9 + k]` = signal + 1 (0, 1, 2) of MA `k` of family
    /// `f` at bar `i`.
    pub(super) sig: Vec<u8>,
}

impl SharedSignals {
    /// An `n`-bar value to be filled by the kernel.
    pub(super) fn nan(n: usize) -> SharedSignals {
        SharedSignals {
            n,
            r: vec![f64::NAN; n],
            sig: vec![1; MA_COUNT * n],
        }
    }

    /// The signals (+1) of family `f`, bar after bar, nine per bar. Every
    /// byte written must be 0, 1 or 2 (the layer kernel relies on it).
    pub(super) fn family_mut(&mut self, f: usize) -> &mut [u8] {
        &mut self.sig[f * self.n * K..(f + 1) * self.n * K]
    }

    /// Bars.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether there are no bars.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The rate of change `R` (NaN at bar 0).
    pub fn r(&self) -> &[f64] {
        &self.r
    }

    /// The cross signal (-1, 0, 1) of MA `ma` (`family.index() · 9 + k`,
    /// the spec's column order) at `bar`.
    pub fn signal(&self, ma: usize, bar: usize) -> i8 {
        let (f, k) = (ma / K, ma % K);
        self.sig[(f * self.n + bar) * K + k] as i8 - 1
    }

    /// The same values as a [`SignalBank`] (the single-series engine's
    /// layout, which the result cache stores).
    pub fn to_bank(&self) -> SignalBank {
        SignalBank {
            r: self.r.clone(),
            sig: (0..MA_COUNT)
                .map(|ma| (0..self.n).map(|i| self.signal(ma, i)).collect())
                .collect(),
        }
    }

    /// A [`SignalBank`] in this layout (`None` if its vectors are not all
    /// as long as `bank.r`, or a signal is not -1, 0 or 1).
    pub fn from_bank(bank: &SignalBank) -> Option<SharedSignals> {
        let n = bank.r.len();
        if bank.sig.len() != MA_COUNT || bank.sig.iter().any(|s| s.len() != n) {
            return None;
        }
        let mut out = SharedSignals::nan(n);
        out.r.copy_from_slice(&bank.r);
        for (ma, s) in bank.sig.iter().enumerate() {
            let (f, k) = (ma / K, ma % K);
            for (i, &v) in s.iter().enumerate() {
                if !(-1..=1).contains(&v) {
                    return None;
                }
                out.sig[(f * n + i) * K + k] = (v + 1) as u8;
            }
        }
        Some(out)
    }
}

/// A shared-stage kernel entry point for `W` lanes.
type SharedFn<const W: usize> =
    dyn Fn(&[[f64; W]], &[[usize; K]; 6], &mut Scratch<W>, &mut [SharedSignals]) + Sync;

/// The shared stage of a sweep ([`SharedSignals`]) for the validated,
/// length-sorted series `ok` of `closes`: batches of `W` series in SIMD
/// lanes, in parallel on the current rayon pool. `lens` are the nine
/// lengths of each family. Returns `(index into closes, signals)`.
pub(super) fn shared_batches(
    ok: &[usize],
    closes: &[&[f64]],
    lens: &[[usize; K]; 6],
    isa: Isa,
) -> Vec<(usize, SharedSignals)> {
    match Path::resolve(isa) {
        // SAFETY (both arms): `Path::resolve` picks these paths only when
        // the CPU reports the kernel's target features.
        #[cfg(target_arch = "x86_64")]
        Path::Avx512 => {
            shared_lanes::<BATCH_LANES_AVX512>(ok, closes, lens, &|x, l, sc, o| unsafe {
                shared_kernel_avx512(x, l, sc, o)
            })
        }
        #[cfg(target_arch = "x86_64")]
        Path::Avx2 => shared_lanes::<BATCH_LANES>(ok, closes, lens, &|x, l, sc, o| unsafe {
            shared_kernel_avx2(x, l, sc, o)
        }),
        Path::Baseline => shared_lanes::<BATCH_LANES>(
            ok,
            closes,
            lens,
            &shared_kernel::<BATCH_LANES, Arr<BATCH_LANES>>,
        ),
    }
}

fn shared_lanes<const W: usize>(
    ok: &[usize],
    closes: &[&[f64]],
    lens: &[[usize; K]; 6],
    kern: &SharedFn<W>,
) -> Vec<(usize, SharedSignals)> {
    let per_batch: Vec<Vec<(usize, SharedSignals)>> = ok
        .par_chunks(W)
        .map_init(Scratch::<W>::default, |sc, chunk| {
            let series: Vec<&[f64]> = chunk.iter().map(|&i| closes[i]).collect();
            let mut x = std::mem::take(&mut sc.x);
            pack_lanes(&series, &mut x);
            let mut outs: Vec<SharedSignals> =
                series.iter().map(|s| SharedSignals::nan(s.len())).collect();
            kern(&x, lens, sc, &mut outs);
            sc.x = x;
            chunk.iter().copied().zip(outs).collect()
        })
        .collect();
    per_batch.into_iter().flatten().collect()
}

/// [`shared_kernel`] compiled with AVX2 (see [`kernel_avx2`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn shared_kernel_avx2(
    x: &[[f64; 4]],
    lens: &[[usize; K]; 6],
    sc: &mut Scratch<4>,
    out: &mut [SharedSignals],
) {
    shared_kernel::<4, Avx>(x, lens, sc, out)
}

/// [`shared_kernel`] compiled with AVX-512F (see [`kernel_avx512`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn shared_kernel_avx512(
    x: &[[f64; 8]],
    lens: &[[usize; K]; 6],
    sc: &mut Scratch<8>,
    out: &mut [SharedSignals],
) {
    shared_kernel::<8, Avx512>(x, lens, sc, out)
}

/// The part of [`kernel`] that every (lambda, decay, cutout, thresholds)
/// shares: the rate of change, the 54 moving averages and their persistent
/// cross signals (spec sec. 5–7), with the very operations of [`kernel`]
/// ([`family_mas`], [`update_signals`]), so the signals are its bits.
/// `out[l]` receives lane `l` (its own length, at most `x.len()`).
#[inline(always)]
fn shared_kernel<const W: usize, V: Lanes<W>>(
    x: &[[f64; W]],
    lens: &[[usize; K]; 6],
    sc: &mut Scratch<W>,
    out: &mut [SharedSignals],
) {
    let n = x.len();
    let nan = [f64::NAN; W];
    let [r, _, _, _, _, _, _, diffs, _, _] = bar_rows(&mut sc.bars, n);
    r[0] = nan;
    for i in 1..n {
        for l in 0..W {
            r[i][l] = (x[i][l] - x[i - 1][l]) / x[i - 1][l];
        }
    }
    for (l, o) in out.iter_mut().enumerate() {
        for (v, ri) in o.r.iter_mut().zip(r.iter()) {
            *v = ri[l];
        }
    }
    for v in [&mut sc.mas, &mut sc.tmp] {
        v.resize(K * n, nan);
    }
    let (mas, tmp) = (sc.mas.as_mut_slice(), sc.tmp.as_mut_slice());
    let diffs = &mut diffs[..n - 1];
    for (o, w) in diffs.iter_mut().zip(x.windows(2)) {
        for l in 0..W {
            o[l] = (w[1][l] - w[0][l]).abs();
        }
    }
    let zero = V::splat(0.0);
    // Per bar and MA, the lanes whose signal is 1 (low byte) and -1 (next
    // byte) as bits (W <= 8).
    let mut masks = std::mem::take(&mut sc.masks);
    masks.resize(K * n, 0);
    for f in Family::ALL {
        family_mas::<W, V>(f, x, &lens[f.index()], diffs, mas, tmp);
        let mut s = [zero; K];
        for (i, row) in masks.chunks_exact_mut(K).enumerate() {
            if i >= 1 {
                update_signals(&mut s, x, &*mas, i, n);
            }
            for (m, v) in row.iter_mut().zip(&s) {
                *m = (V::bits(v.gt(zero)) | V::bits(v.lt(zero)) << 8) as u16;
            }
        }
        // Each lane's signal + 1 (0, 1, 2), contiguous in and out.
        for (l, o) in out.iter_mut().enumerate() {
            let dst = o.family_mut(f.index());
            for (b, m) in dst.iter_mut().zip(&masks) {
                *b = 1 + (m >> l & 1) as u8 - (m >> (l + 8) & 1) as u8;
            }
        }
    }
    sc.masks = masks;
}
