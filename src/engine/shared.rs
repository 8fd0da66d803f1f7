//! Shared work for parameter sweeps: the part of ATC that a (lambda,
//! decay, cutout, thresholds) combination does not change is computed once
//! per series and length set, and only the equity stage runs per
//! combination, several combinations side by side in SIMD lanes.
//!
//! # The two stages
//!
//! * [`shared_signals`]: the rate of change `R` and the 54 persistent cross
//!   signals of each series (spec sec. 5–7). They depend on the closes and
//!   the lengths (robustness and the six base lengths) only. Computed by
//!   the batched engine's own moving-average and signal code (symbols in
//!   lanes), so they are its bits.
//! * [`LayerLanes::average_signal`]: layer 1, the family signals, layer 2
//!   and the average signal (spec sec. 8–12) of one series for up to
//!   [`LayerLanes::width`] (lambda, decay) pairs with one cutout, one pair
//!   per SIMD lane; [`lane_directions`] then gives the direction for any
//!   pair of thresholds (they only act on the average signal).
//!
//! # Why the bits are the engine's
//!
//! Every lane performs the IEEE operations of the batched kernel's
//! `family_layers` on its own pair, in the same order (no FMA, no
//! reordered sums); only where the operands come from changes:
//!
//! * The growth factors `exp(La·t)` are computed once per lane by the same
//!   expression as the engine's (spec sec. 6 allows sharing them: they
//!   depend only on lambda and `i − cutout`), and `1 + R·g`, `1 + (−R·g)`
//!   once per bar and lane.
//! * The equity factor of a layer-1 curve is `up`, `down` or `1.0`
//!   according to the previous bar's signal; the engine chooses it with two
//!   selects, here it is looked up by the signal (stored as 0, 1, 2) in a
//!   per-bar table of the very same three values. The signal itself is
//!   likewise a table entry `-1.0`, `0.0`, `1.0`.
//! * The family signal `L1 = round2(x) = floor(100·x + 0.5) / 100` is only
//!   ever compared (sign for layer 2, `Cut` for the average). For an
//!   integral `k = floor(100·x + 0.5)` (or NaN, ±∞, or a huge value),
//!   `k / 100` and `k` have the same sign, and `k / 100 > 0.49` exactly
//!   when `k > 49` (division by 100 is monotonic and `49 / 100` rounds to
//!   the double `0.49`); likewise for `< −0.49`. So the kernel compares
//!   `k` and skips the division, with the same outcomes.
//!
//! `tests/lib/sweep_shared.rs` checks the result against the batched and
//! single-series engines bit for bit on random series and grids, on every
//! instruction-set path.

use super::atc::{validate_close, LENGTHS_PER_FAMILY};
use super::batch::{shared_batches, Isa, Path, SharedSignals};
use super::error::EngineError;
use super::lanes::{Arr, Lanes};
#[cfg(target_arch = "x86_64")]
use super::lanes::{Avx, Avx512};
use super::params::{AtcParams, Family};

const K: usize = LENGTHS_PER_FAMILY;

/// The shared stage of every series of `closes` under the lengths of
/// `params` (the other parameters do not matter), batched in SIMD lanes
/// and run in parallel on the current rayon pool; results in input order.
/// The signals are bit-identical to the engine's (`compute` with
/// [`Detail::Full`](super::Detail::Full)) and `R` to its `r`.
///
/// A bad parameter set fails the whole call; a bad series gives its own
/// error (as [`compute_batch`](super::compute_batch)).
pub fn shared_signals(
    closes: &[&[f64]],
    params: &AtcParams,
    isa: Isa,
) -> Result<Vec<Result<SharedSignals, EngineError>>, EngineError> {
    params.validate()?;
    let mut lens = [[0; K]; 6];
    for f in Family::ALL {
        // validate() has run, so every family has its nine lengths.
        lens[f.index()] = params.lengths(f).unwrap_or([2; K]);
    }
    let mut out: Vec<Option<Result<SharedSignals, EngineError>>> = Vec::with_capacity(closes.len());
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
    // Longest first, ties in input order (as `compute_batch`).
    ok.sort_by_key(|&i| std::cmp::Reverse(closes[i].len()));
    for (i, s) in shared_batches(&ok, closes, &lens, isa) {
        out[i] = Some(Ok(s));
    }
    Ok(out
        .into_iter()
        .map(|o| o.unwrap_or(Err(EngineError::EmptySeries)))
        .collect())
}

/// The kernel a [`LayerLanes`] runs on, with its lane count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LanePath {
    Baseline,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl LanePath {
    fn width(self) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            LanePath::Avx512 => 8,
            _ => 4,
        }
    }
}

/// Up to [`LayerLanes::width`] (lambda, decay) pairs that share a cutout,
/// the starting equity and the weights, prepared for
/// [`LayerLanes::average_signal`]: their growth factors are computed once
/// here for every series up to `max_bars` bars.
#[derive(Debug, Clone)]
pub struct LayerLanes {
    path: LanePath,
    lanes: usize,
    cutout: usize,
    start: f64,
    weights: [f64; 6],
    /// `1 − decay/100` per lane (`width` entries; unused lanes repeat lane 0).
    d: Vec<f64>,
    /// `La` per lane (as `d`).
    la: Vec<f64>,
    /// `exp(La·t)` at `[t · width + lane]`, `t < max_bars − cutout`.
    growth: Vec<f64>,
}

/// Buffers [`LayerLanes::average_signal`] reuses from call to call.
#[derive(Debug, Clone, Default)]
pub struct LaneScratch {
    facs: Vec<f64>,
    num: Vec<f64>,
    den: Vec<f64>,
}

impl LayerLanes {
    /// The most lanes one [`LayerLanes`] can hold with `isa` on this CPU (8
    /// with AVX-512F, else 4).
    pub fn max_width(isa: Isa) -> usize {
        Self::path_for(usize::MAX, isa).width()
    }

    fn path_for(lanes: usize, isa: Isa) -> LanePath {
        match Path::resolve(isa) {
            #[cfg(target_arch = "x86_64")]
            // Four pairs fill an AVX2 register; AVX-512 pays off only
            // for more (its 512-bit operations issue on fewer ports).
            Path::Avx512 if lanes > 4 => LanePath::Avx512,
            #[cfg(target_arch = "x86_64")]
            Path::Avx512 | Path::Avx2 => LanePath::Avx2,
            Path::Baseline => LanePath::Baseline,
        }
    }

    /// Prepares `params` (one per lane, at most [`LayerLanes::max_width`])
    /// for series of up to `max_bars` bars (longer ones work, slower).
    ///
    /// Every parameter set must be valid and share `cutout`,
    /// `starting_equity` and the six weights (their lengths and thresholds
    /// do not matter here); errors otherwise.
    pub fn new(
        params: &[&AtcParams],
        max_bars: usize,
        isa: Isa,
    ) -> Result<LayerLanes, EngineError> {
        let lanes_err = |count: usize| EngineError::InvalidParam {
            name: "lanes",
            value: count.to_string(),
            range: "1 ..= LayerLanes::max_width parameter sets",
        };
        let first = params.first().ok_or(lanes_err(0))?;
        let path = Self::path_for(params.len(), isa);
        let width = path.width();
        if params.len() > width {
            return Err(lanes_err(params.len()));
        }
        for p in params {
            p.validate()?;
            let same = p.cutout == first.cutout
                && p.starting_equity.to_bits() == first.starting_equity.to_bits()
                && Family::ALL
                    .iter()
                    .all(|&f| p.weight(f).to_bits() == first.weight(f).to_bits());
            if !same {
                return Err(EngineError::InvalidParam {
                    name: "cutout",
                    value: p.cutout.to_string(),
                    range: "the same cutout, starting_equity and weights in every lane",
                });
            }
        }
        let lane = |l: usize| params.get(l).unwrap_or(first);
        let la: Vec<f64> = (0..width).map(|l| lane(l).la()).collect();
        let d: Vec<f64> = (0..width).map(|l| lane(l).decay_multiplier()).collect();
        let steps = max_bars.saturating_sub(first.cutout);
        let mut growth = Vec::with_capacity(steps * width);
        for t in 0..steps {
            // The engine's expression, so the engine's bits.
            growth.extend(la.iter().map(|&a| (a * t as f64).exp()));
        }
        Ok(LayerLanes {
            path,
            lanes: params.len(),
            cutout: first.cutout,
            start: first.starting_equity,
            weights: Family::ALL.map(|f| first.weight(f)),
            d,
            la,
            growth,
        })
    }

    /// Lanes per bar in the output of [`LayerLanes::average_signal`] (4 or
    /// 8; lanes beyond [`LayerLanes::lanes`] are padding).
    pub fn width(&self) -> usize {
        self.path.width()
    }

    /// Parameter sets given to [`LayerLanes::new`].
    pub fn lanes(&self) -> usize {
        self.lanes
    }

    /// The average signal of the series of `s` for every lane: `avg[i ·
    /// width + lane]` for bar `i` (resized to `s.len() · width`), bit for
    /// bit the engine's `avg` under that lane's parameters.
    pub fn average_signal(&self, s: &SharedSignals, scratch: &mut LaneScratch, avg: &mut Vec<f64>) {
        match self.path {
            // SAFETY (both arms): `path_for` picks these paths only when
            // the CPU reports the kernel's target features.
            #[cfg(target_arch = "x86_64")]
            LanePath::Avx512 => unsafe { lanes_avx512(self, s, scratch, avg) },
            #[cfg(target_arch = "x86_64")]
            LanePath::Avx2 => unsafe { lanes_avx2(self, s, scratch, avg) },
            LanePath::Baseline => lanes_run::<4, Arr<4>>(self, s, scratch, avg),
        }
    }
}

/// A direction series wanted from an output of
/// [`LayerLanes::average_signal`]: its lane and the thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LaneThresholds {
    /// The lane (clamped to the output's width).
    pub lane: usize,
    /// Long threshold: the direction turns `+1` when the average signal
    /// crosses above it.
    pub long: f64,
    /// Short threshold: the direction turns `−1` when the average signal
    /// crosses below it.
    pub short: f64,
}

impl LaneThresholds {
    /// Lane `lane` under the thresholds of `p`.
    pub fn of(lane: usize, p: &AtcParams) -> LaneThresholds {
        LaneThresholds {
            lane,
            long: p.long_threshold,
            short: p.short_threshold,
        }
    }
}

/// The direction (spec sec. 12) of each entry of `wanted` (any lanes of
/// an output of [`LayerLanes::average_signal`] with `width` lanes per bar,
/// repeated or not, each with its own thresholds), into `out[j]` for
/// `wanted[j]` (`out` as long as `wanted`; each resized to one value per
/// bar): the operations of the engine's direction step. Several series are
/// stepped side by side in SIMD lanes per pass over `avg`: the same
/// comparisons per series (ordered, so NaN compares false as in the
/// engine), so the same values as one at a time.
pub fn lane_directions(avg: &[f64], width: usize, wanted: &[LaneThresholds], out: &mut [Vec<i8>]) {
    let width = width.max(1);
    match Path::resolve(Isa::Auto) {
        // SAFETY (both arms): `resolve` picks these paths only when the
        // CPU reports the kernel's target features.
        #[cfg(target_arch = "x86_64")]
        Path::Avx512 => unsafe { directions_avx512(avg, width, wanted, out) },
        #[cfg(target_arch = "x86_64")]
        Path::Avx2 => unsafe { directions_avx2(avg, width, wanted, out) },
        Path::Baseline => directions::<4, Arr<4>>(avg, width, wanted, out),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn directions_avx2(
    avg: &[f64],
    width: usize,
    wanted: &[LaneThresholds],
    out: &mut [Vec<i8>],
) {
    directions::<4, Avx>(avg, width, wanted, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn directions_avx512(
    avg: &[f64],
    width: usize,
    wanted: &[LaneThresholds],
    out: &mut [Vec<i8>],
) {
    directions::<8, Avx512>(avg, width, wanted, out)
}

/// [`lane_directions`], `W` series per pass (a last, short batch repeats
/// its last series in the spare lanes).
#[inline(always)]
fn directions<const W: usize, V: Lanes<W>>(
    avg: &[f64],
    width: usize,
    wanted: &[LaneThresholds],
    out: &mut [Vec<i8>],
) {
    let n = avg.len() / width;
    // Per bar, the lanes whose direction is +1 and those where it is −1
    // (bit j: series j).
    let mut steps: Vec<(u32, u32)> = Vec::with_capacity(n);
    for (ws, os) in wanted.chunks(W).zip(out.chunks_mut(W)) {
        let Some(&last) = ws.last() else {
            continue;
        };
        let pick = |j: usize| ws.get(j).copied().unwrap_or(last);
        let lane: [usize; W] = std::array::from_fn(|j| pick(j).lane.min(width - 1));
        let long = V::load(&std::array::from_fn(|j| pick(j).long));
        let short = V::load(&std::array::from_fn(|j| pick(j).short));
        if width >= W && lane.iter().enumerate().all(|(j, &l)| l == j) {
            // The usual batch: lanes 0..W in order, one load per bar.
            step_bars::<W, V>(avg, width, n, long, short, &mut steps, |bar| {
                V::load(bar[..W].try_into().unwrap_or(&[f64::NAN; W]))
            });
        } else {
            step_bars::<W, V>(avg, width, n, long, short, &mut steps, |bar| {
                V::load(&std::array::from_fn(|j| bar[lane[j]]))
            });
        }
        for (j, o) in os.iter_mut().enumerate() {
            o.clear();
            o.extend(
                steps
                    .iter()
                    .map(|&(up, down)| ((up >> j) & 1) as i8 - ((down >> j) & 1) as i8),
            );
        }
    }
}

/// The direction steps of one batch of [`directions`] into `steps`,
/// reading each bar's `W` average signals with `load`.
#[inline(always)]
fn step_bars<const W: usize, V: Lanes<W>>(
    avg: &[f64],
    width: usize,
    n: usize,
    long: V,
    short: V,
    steps: &mut Vec<(u32, u32)>,
    load: impl Fn(&[f64]) -> V,
) {
    steps.clear();
    let mut bars = avg.chunks_exact(width).take(n);
    let Some(bar) = bars.next() else {
        return;
    };
    // Bar 0 has no previous bar: no cross (the state starts at 0).
    let (mut up, mut down) = (0u32, 0u32);
    let mut p = load(bar);
    steps.push((up, down));
    for bar in bars {
        let a = load(bar);
        let over = V::bits(V::and(a.gt(long), p.le(long)));
        let under = V::bits(V::and(a.lt(short), p.ge(short)));
        // Under wins over over; neither keeps the state.
        down = under | (!over & down);
        up = !under & (over | up);
        steps.push((up, down));
        p = a;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn lanes_avx2(ll: &LayerLanes, s: &SharedSignals, sc: &mut LaneScratch, avg: &mut Vec<f64>) {
    lanes_run::<4, Avx>(ll, s, sc, avg)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn lanes_avx512(
    ll: &LayerLanes,
    s: &SharedSignals,
    sc: &mut LaneScratch,
    avg: &mut Vec<f64>,
) {
    lanes_run::<8, Avx512>(ll, s, sc, avg)
}

/// Sizes the buffers in lane layout and runs the kernel.
#[inline(always)]
fn lanes_run<const W: usize, V: Lanes<W>>(
    ll: &LayerLanes,
    s: &SharedSignals,
    sc: &mut LaneScratch,
    avg: &mut Vec<f64>,
) {
    let n = s.n;
    avg.resize(n * W, f64::NAN);
    sc.facs.resize(n * W * 4, f64::NAN);
    sc.num.resize(n * W, 0.0);
    sc.den.resize(n * W, 0.0);
    let avg = avg.as_chunks_mut::<W>().0;
    let facs = sc.facs.as_chunks_mut::<W>().0.as_chunks_mut::<4>().0;
    let num = sc.num.as_chunks_mut::<W>().0;
    let den = sc.den.as_chunks_mut::<W>().0;
    lanes_kernel::<W, V>(ll, s, facs, num, den, avg);
}

/// The layers and the average signal for `W` lanes (see the module doc).
#[inline(always)]
fn lanes_kernel<const W: usize, V: Lanes<W>>(
    ll: &LayerLanes,
    s: &SharedSignals,
    facs: &mut [[[f64; W]; 4]],
    num: &mut [[f64; W]],
    den: &mut [[f64; W]],
    avg: &mut [[f64; W]],
) {
    let n = s.n;
    let c = ll.cutout;
    let first = c.min(n);
    // Before the first active bar the average signal is na (spec sec. 12).
    avg[..first].fill([f64::NAN; W]);
    if first == n {
        return;
    }
    // Per bar the three equity factors `1 + a` a layer-1 curve can take,
    // indexed by the previous signal + 1: `1 + (−rg)`, `1.0`, `1 + rg`
    // (the fourth entry is padding).
    let steps = ll.growth.len() / W;
    // A bound on every layer-1 equity of the bar, per lane: the floored
    // start times the largest factor of each bar since (`d <= 1`), and the
    // first bar where it may no longer be finite (see `family_lanes`).
    let mut bound = [ll.start.max(0.25); W];
    let mut tame_until = n;
    for (t, (fac, &r)) in facs[c..n].iter_mut().zip(&s.r[c..n]).enumerate() {
        let g: [f64; W] = if t < steps {
            std::array::from_fn(|l| ll.growth[t * W + l])
        } else {
            std::array::from_fn(|l| (ll.la[l] * t as f64).exp())
        };
        let mut up = [0.0; W];
        let mut down = [0.0; W];
        for l in 0..W {
            let rg = r * g[l];
            up[l] = 1.0 + rg;
            down[l] = 1.0 + (-rg);
        }
        *fac = [down, [1.0; W], up, [1.0; W]];
        // The first active bar's factors are never applied (its equities
        // are the start; its R is na when it is bar 0).
        if t > 0 && tame_until == n {
            let mut tame = true;
            for l in 0..W {
                // NaN compares false: a NaN factor ends the tame bars.
                bound[l] *= if up[l] > down[l] { up[l] } else { down[l] };
                tame &= bound[l] < TAME;
            }
            if !tame {
                tame_until = c + t;
            }
        }
    }
    num[c..n].fill([0.0; W]);
    den[c..n].fill([0.0; W]);
    let d = V::load(&std::array::from_fn(|l| ll.d[l]));
    let facs = &facs[..n];
    for f in 0..6 {
        let sig = &s.sig[f * n * K..(f + 1) * n * K];
        family_lanes::<W, V>(
            sig,
            c,
            tame_until,
            ll.start,
            ll.weights[f],
            d,
            facs,
            num,
            den,
        );
    }
    for i in c..n {
        for l in 0..W {
            avg[i][l] = num[i][l] / den[i][l];
        }
    }
}

/// Below this bound every layer-1 equity of a bar is finite and so is the
/// sum of nine of them (`9 · 1e300 < f64::MAX`, with room for the rounding
/// of the bound's own product).
const TAME: f64 = 1e300;

/// One family's layer 1, family signal, layer 2 and average-signal term,
/// bars `c..n`: the operations of the batched kernel's `family_layers`
/// (see the module doc for the table lookups and the skipped division).
/// (Running two or three families in one bar loop, for more independent
/// work per bar, measured no faster: the loop is throughput-bound.)
///
/// On a bar where the nine signals agree (all `+1`, all `−1` or all `0`;
/// about 87% of bars on `data synth`'s walks) the family signal is known
/// without its sums: the numerator is then, operation for operation, the
/// denominator (`1·v = v`), its negation (`−1·v = −v`, and rounding is
/// symmetric) or `+0` (`0·v`), so with a finite denominator (>= 0.25: the
/// floor) the quotient is exactly `1`, `−1` or `+0` and `k = 100`, `−100`
/// or `0`. The signals are the same in every lane, so the test is one
/// scalar test per bar. Before `tame_until` every equity is below
/// [`TAME`], so the denominator is finite; from there on (a growth factor
/// overflowing, say) the sums are always taken.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn family_lanes<const W: usize, V: Lanes<W>>(
    sig: &[u8],
    c: usize,
    tame_until: usize,
    start: f64,
    w: f64,
    d: V,
    facs: &[[[f64; W]; 4]],
    num: &mut [[f64; W]],
    den: &mut [[f64; W]],
) {
    let n = facs.len();
    let (zero, one, quarter) = (V::splat(0.0), V::splat(1.0), V::splat(0.25));
    let sgn = [V::splat(-1.0), zero, one, zero];
    // The first active bar: every equity is its (floored) start and layer
    // 2 reads an na L1, so its `a` keeps the initial 0.0.
    let v0 = V::splat(start).floor_at(quarter);
    let mut e = [v0; K];
    let row = &sig[c * K..(c + 1) * K];
    let (mut nm, mut dn) = (zero, zero);
    for k in 0..K {
        nm = nm.add(sgn[row[k] as usize].mul(e[k]));
        dn = dn.add(e[k]);
    }
    let mut k_prev = round_k::<W, V>(nm.div(dn));
    let mut e2 = V::splat(w).floor_at(quarter);
    let mut f2 = one.add(zero);
    // `k` of a bar whose nine signals all equal the index (see above).
    let agreed = [V::splat(-100.0), zero, V::splat(100.0), zero];
    avg_term::<W, V>(k_prev, e2, &mut num[c], &mut den[c]);
    for i in c + 1..n {
        let fr = &facs[i];
        let prev = &sig[(i - 1) * K..i * K];
        let cur = &sig[i * K..(i + 1) * K];
        let s0 = cur[0];
        let differ = cur.iter().fold(0u8, |a, &s| a | (s ^ s0));
        let k_now = if differ == 0 && i < tame_until {
            for k in 0..K {
                let p = prev[k] as usize;
                debug_assert!(p < 3);
                // SAFETY: as below.
                let fac = unsafe { fr.get_unchecked(p) };
                e[k] = e[k].mul(d).mul(V::load(fac)).floor_at(quarter);
            }
            debug_assert!(s0 < 3);
            // SAFETY: as below.
            *unsafe { agreed.get_unchecked(s0 as usize) }
        } else {
            let (mut nm, mut dn) = (zero, zero);
            for k in 0..K {
                let (p, s) = (prev[k] as usize, cur[k] as usize);
                debug_assert!(p < 3 && s < 3);
                // SAFETY: a `SharedSignals` only ever holds 0, 1 or 2 (`nan`
                // fills 1s, `from_bank` checks, the shared kernel writes
                // 1 + [s > 0] − [s < 0]), and both tables have four entries.
                // (Bounds checks here cost a third of the kernel's
                // instructions: they kept every index live across the loop.)
                let (fac, sg) = unsafe { (fr.get_unchecked(p), sgn.get_unchecked(s)) };
                let v = e[k].mul(d).mul(V::load(fac)).floor_at(quarter);
                nm = nm.add(sg.mul(v));
                dn = dn.add(v);
                e[k] = v;
            }
            round_k::<W, V>(nm.div(dn))
        };
        // Layer 2 reads the family signal of the previous bar.
        let (u, dw) = (V::load(&fr[2]), V::load(&fr[0]));
        f2 = V::select(k_prev.gt(zero), u, V::select(k_prev.lt(zero), dw, f2));
        e2 = e2.mul(d).mul(f2).floor_at(quarter);
        avg_term::<W, V>(k_now, e2, &mut num[i], &mut den[i]);
        k_prev = k_now;
    }
}

/// `floor(100·x + 0.5)`: `round2` without its final `/ 100` (see the
/// module doc). Not a closure: a closure would not inherit the kernel's
/// target features.
#[inline(always)]
fn round_k<const W: usize, V: Lanes<W>>(x: V) -> V {
    x.mul(V::splat(100.0)).add(V::splat(0.5)).floor_exact()
}

/// Adds a family's term `Cut(L1)·eq2` and `eq2` to the average signal's
/// numerator and denominator (spec sec. 12), `Cut` taken on `k = 100·L1`.
#[inline(always)]
fn avg_term<const W: usize, V: Lanes<W>>(k: V, e2: V, num: &mut [f64; W], den: &mut [f64; W]) {
    let cut = V::select(
        k.gt(V::splat(49.0)),
        V::splat(1.0),
        V::select(k.lt(V::splat(-49.0)), V::splat(-1.0), V::splat(0.0)),
    );
    *num = V::load(num).add(cut.mul(e2)).store();
    *den = V::load(den).add(e2).store();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::SplitMix64;

    /// The direction step one series at a time, as the engine writes it.
    fn reference(avg: &[f64], width: usize, t: LaneThresholds) -> Vec<i8> {
        let mut state = 0.0f64;
        let mut p = f64::NAN;
        let mut out = Vec::new();
        for (i, bar) in avg.chunks_exact(width).enumerate() {
            let a = bar[t.lane.min(width - 1)];
            if i > 0 && a < t.short && p >= t.short {
                state = -1.0;
            } else if i > 0 && a > t.long && p <= t.long {
                state = 1.0;
            }
            out.push(state as i8);
            p = a;
        }
        out
    }

    /// Every SIMD path steps each series as the scalar reference does:
    /// NaN and ±inf averages, equal thresholds, repeated and out-of-range
    /// lanes, batches of 1 to 19 series.
    #[test]
    fn every_path_steps_directions_as_one_series_at_a_time() {
        let mut rng = SplitMix64::new(31);
        for case in 0..200 {
            let width = [1, 4, 8][case % 3];
            let n = (rng.next_u64() % 300) as usize;
            let avg: Vec<f64> = (0..n * width)
                .map(|_| match rng.next_u64() % 20 {
                    0 => f64::NAN,
                    1 => f64::INFINITY,
                    2 => f64::NEG_INFINITY,
                    3 => 0.0,
                    _ => (rng.next_u64() % 2001) as f64 / 1000.0 - 1.0,
                })
                .collect();
            let count = 1 + (rng.next_u64() % 19) as usize;
            let wanted: Vec<LaneThresholds> = (0..count)
                .map(|j| {
                    let long = [0.0, 0.1, 0.5, f64::NAN][(rng.next_u64() % 4) as usize];
                    LaneThresholds {
                        lane: if case % 2 == 0 {
                            j
                        } else {
                            (rng.next_u64() % 10) as usize
                        },
                        long,
                        short: [0.0, -0.1, -0.5, long][(rng.next_u64() % 4) as usize],
                    }
                })
                .collect();
            let want: Vec<Vec<i8>> = wanted.iter().map(|&t| reference(&avg, width, t)).collect();
            let mut got = vec![Vec::new(); count];
            directions::<4, Arr<4>>(&avg, width, &wanted, &mut got);
            assert_eq!(got, want, "case {case}: baseline");
            lane_directions(&avg, width, &wanted, &mut got);
            assert_eq!(got, want, "case {case}: auto");
            #[cfg(target_arch = "x86_64")]
            {
                if is_x86_feature_detected!("avx2") {
                    got.iter_mut().for_each(Vec::clear);
                    // SAFETY: the CPU has AVX2.
                    unsafe { directions_avx2(&avg, width, &wanted, &mut got) };
                    assert_eq!(got, want, "case {case}: avx2");
                }
                if is_x86_feature_detected!("avx512f") {
                    got.iter_mut().for_each(Vec::clear);
                    // SAFETY: the CPU has AVX-512F.
                    unsafe { directions_avx512(&avg, width, &wanted, &mut got) };
                    assert_eq!(got, want, "case {case}: avx512");
                }
            }
        }
    }
}
