//! Backtest library: fills, fees, marks and every metric against values
//! computed on paper; no look-ahead; warm-up entry; open trades; exits at
//! the end of a symbol's data; portfolio union with carry-forward;
//! determinism; degenerate ratios; the metrics against quantstats' numbers
//! on a committed curve.

use atc_bt::backtest::{
    benchmark_metrics, metrics, metrics_of_stats, periods_per_year, portfolio, simulate,
    BacktestError, Bars, Calendar, Curve, ExecConfig, ExitReason, Metrics, MetricsOptions, Mode,
    Side, SymbolRun, Trade, TradeStat,
};

const DAY: i64 = 86_400_000_000;
/// 2024-01-01 00:00 UTC, a Monday.
const MON: i64 = 1_704_067_200_000_000;

fn daily(n: usize) -> Vec<i64> {
    (0..n as i64).map(|k| MON + k * DAY).collect()
}

fn close_to(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * (1.0 + b.abs())
}

macro_rules! assert_close {
    ($a:expr, $b:expr) => {{
        let (a, b): (f64, f64) = ($a, $b);
        assert!(close_to(a, b), "{} = {a}, expected {b}", stringify!($a));
    }};
}

/// Serializes to JSON and back: the JSON must be valid (no NaN/inf) and
/// every number must survive to within parsing precision (serde_json's
/// default parser may be off by one ulp).
fn assert_json_round_trip(m: &Metrics) {
    let json = serde_json::to_string(m).unwrap();
    assert!(!json.contains("NaN") && !json.contains("inf"), "{json}");
    let back: Metrics = serde_json::from_str(&json).unwrap();
    let (a, b) = (
        serde_json::to_value(m).unwrap(),
        serde_json::to_value(&back).unwrap(),
    );
    for (k, v) in a.as_object().unwrap() {
        let w = &b[k];
        match (v.as_f64(), w.as_f64()) {
            (Some(x), Some(y)) => assert!(close_to(y, x), "{k}: {x} vs {y}"),
            _ => assert_eq!(v, w, "{k}"),
        }
    }
}

fn some(x: Option<f64>) -> f64 {
    x.expect("metric should be defined")
}

// Five bars used by the paper cases:
//   bar   open  close  dir
//    0    100    100    1
//    1    100    110    1
//    2    110    120   -1
//    3    120    115    1
//    4    115    120    0
const OPEN: [f64; 5] = [100.0, 100.0, 110.0, 120.0, 115.0];
const CLOSE: [f64; 5] = [100.0, 110.0, 120.0, 115.0, 120.0];
const DIR: [i8; 5] = [1, 1, -1, 1, 0];
const FEE: f64 = 0.001;
const SLIP: f64 = 0.01;

fn paper_run(mode: Mode) -> SymbolRun {
    let ts = daily(5);
    let bars = Bars {
        ts: &ts,
        open: &OPEN,
        close: &CLOSE,
        high: &CLOSE,
        low: &CLOSE,
    };
    let cfg = ExecConfig {
        mode,
        fee: FEE,
        slippage: SLIP,
        stops: Default::default(),
    };
    simulate("P", bars, &DIR, 0..5, 1000.0, &cfg, false).unwrap()
}

#[test]
fn long_only_fills_fees_and_marks_on_paper() {
    let run = paper_run(Mode::LongOnly);
    let ts = daily(5);
    // Bar 0: no warm-up, nothing held.
    assert_eq!(run.equity[0], 1000.0);
    assert_eq!(run.position[0], 0.0);
    // Bar 1 open: dir[0] = 1 → buy at 100·1.01 = 101 with the fee inside
    // the cash: notional n1 = 1000/(1+fee), qty = n1/101, fee = fee·n1,
    // cash left 0.
    let n1 = 1000.0 / (1.0 + FEE);
    let q1 = n1 / 101.0;
    let f1 = FEE * n1;
    assert_close!(run.position[1], q1);
    assert_close!(run.equity[1], q1 * 110.0);
    assert_close!(n1 + f1, 1000.0);
    // Bar 2: hold.
    assert_close!(run.equity[2], q1 * 120.0);
    // Bar 3 open: dir[2] = -1 → flat (long-only): sell at 120·0.99 = 118.8.
    let n3 = q1 * 118.8;
    let c3 = n3 - FEE * n3;
    assert_eq!(run.position[3], 0.0);
    assert_close!(run.equity[3], c3);
    // Bar 4 open: dir[3] = 1 → buy at 115·1.01 = 116.15 with all cash c3.
    let q4 = c3 / (116.15 * (1.0 + FEE));
    let f4 = FEE * c3 / (1.0 + FEE);
    assert_close!(run.position[4], q4);
    assert_close!(run.equity[4], q4 * 120.0);
    assert_close!(run.total_fees, f1 + FEE * n3 + f4);
    // Benchmark: 1000/100 units at bar 0's open, no fees.
    assert_eq!(run.benchmark, vec![1000.0, 1100.0, 1200.0, 1150.0, 1200.0]);
    assert_eq!(run.gross[4], q4 * 120.0);
    let bm = benchmark_metrics(1000.0, &run.benchmark_curve(), &MetricsOptions::default());
    assert_close!(bm.total_return, 0.2);
    assert_eq!((bm.beta, bm.alpha, bm.trades), (Some(1.0), Some(0.0), 0));
    assert_eq!((bm.exposure, bm.max_gross_exposure), (Some(1.0), Some(1.0)));

    assert_eq!(run.trades.len(), 2);
    let t = &run.trades[0];
    assert_eq!(t.side, Side::Long);
    assert_eq!((t.entry_ts, t.exit_ts), (ts[1], Some(ts[3])));
    assert_close!(t.entry_price, 101.0);
    assert_close!(t.exit_price, 118.8);
    assert_close!(t.qty, q1);
    assert_close!(t.fees, f1 + FEE * n3);
    assert_close!(t.pnl, q1 * (118.8 - 101.0) - f1 - FEE * n3);
    assert_close!(t.ret, t.pnl / n1);
    assert_eq!(t.bars_held, 2);
    assert!(!t.open);
    assert_eq!(t.exit_reason, ExitReason::Signal);
    // The position entered at bar 4 is still open: flagged, marked at the last close.
    let o = &run.trades[1];
    assert!(o.open);
    assert_eq!((o.entry_ts, o.exit_ts), (ts[4], None));
    assert_close!(o.exit_price, 120.0);
    assert_close!(o.fees, f4);
    assert_close!(o.pnl, q4 * (120.0 - 116.15) - f4);
    assert_eq!(o.bars_held, 1);
    assert_eq!(o.exit_reason, ExitReason::EndOfWindow);
    // Cash + marks reconcile with the ledger: final equity = capital + Σ pnl.
    let pnl: f64 = run.trades.iter().map(|t| t.pnl).sum();
    assert_close!(run.equity[4], 1000.0 + pnl);
}

#[test]
fn long_short_flip_is_two_trades_with_fees_on_both() {
    let run = paper_run(Mode::LongShort);
    let n1 = 1000.0 / (1.0 + FEE);
    let q1 = n1 / 101.0;
    let n3 = q1 * 118.8;
    let c3 = n3 - FEE * n3; // cash after closing the long
                            // Bar 3 open: then short c3/(1+fee) worth at 118.8: the fee comes out
                            // of equity, the proceeds go to cash.
    let ns = c3 / (1.0 + FEE);
    let qs = ns / 118.8;
    let cash3 = c3 + ns - FEE * ns;
    assert_close!(run.position[3], -qs);
    assert_close!(run.equity[3], cash3 - qs * 115.0);
    // Right after the short entry, equity = c3 − fee·ns.
    assert_close!(cash3 - qs * 118.8, c3 - FEE * ns);
    // Bar 4 open: dir[3] = 1 → buy back at 115·1.01 = 116.15, then go long.
    let nb = qs * 116.15;
    let c4 = cash3 - nb - FEE * nb;
    let q4 = c4 / (116.15 * (1.0 + FEE));
    assert_close!(run.position[4], q4);
    assert_close!(run.equity[4], q4 * 120.0);
    assert_close!(
        run.total_fees,
        FEE * n1 + FEE * n3 + FEE * ns + FEE * nb + FEE * c4 / (1.0 + FEE)
    );

    assert_eq!(run.trades.len(), 3);
    let s = &run.trades[1];
    assert_eq!(s.side, Side::Short);
    assert_close!(s.entry_price, 118.8);
    assert_close!(s.exit_price, 116.15);
    assert_close!(s.qty, qs);
    assert_close!(s.fees, FEE * ns + FEE * nb);
    assert_close!(s.pnl, qs * (118.8 - 116.15) - FEE * ns - FEE * nb);
    assert_close!(s.ret, s.pnl / ns);
    assert_eq!(s.bars_held, 1);
    assert!(run.trades[2].open && run.trades[2].side == Side::Long);
    let pnl: f64 = run.trades.iter().map(|t| t.pnl).sum();
    assert_close!(run.equity[4], 1000.0 + pnl);
}

#[test]
fn warm_up_signal_enters_at_first_window_open() {
    let ts = daily(5);
    let bars = Bars {
        ts: &ts,
        open: &OPEN,
        close: &CLOSE,
        high: &CLOSE,
        low: &CLOSE,
    };
    let cfg = ExecConfig {
        fee: 0.0,
        ..ExecConfig::default()
    };
    // Window starts at bar 2; dir[1] = 1 was known at the last warm-up close.
    let run = simulate("W", bars, &DIR, 2..5, 1000.0, &cfg, false).unwrap();
    assert_eq!(run.ts, ts[2..].to_vec());
    assert_eq!(run.trades[0].entry_ts, ts[2]);
    assert_eq!(run.trades[0].entry_price, 110.0);
    assert_close!(run.equity[0], 1000.0 / 110.0 * 120.0);
    // Benchmark buys at the first window bar's open too.
    assert_close!(run.benchmark[0], 1000.0 / 110.0 * 120.0);
    // Without warm-up nothing is held at bar 0, and dir[0] fills at bar 1's open.
    let run0 = simulate("W", bars, &DIR, 0..5, 1000.0, &cfg, false).unwrap();
    assert_eq!(run0.position[0], 0.0);
    assert_eq!(run0.trades[0].entry_ts, ts[1]);
}

/// A deterministic pseudo-random walk (no external generator needed).
fn walk(n: usize, seed: u64) -> (Vec<f64>, Vec<f64>, Vec<i8>) {
    let mut s = seed;
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 33) as f64 / (1u64 << 31) as f64
    };
    let (mut open, mut close, mut dir) = (Vec::new(), Vec::new(), Vec::new());
    let mut p = 100.0;
    for _ in 0..n {
        let o = p * (1.0 + 0.02 * (next() - 0.5));
        p = o * (1.0 + 0.04 * (next() - 0.5));
        open.push(o);
        close.push(p);
        dir.push(((next() * 3.0) as i8 - 1).clamp(-1, 1));
    }
    (open, close, dir)
}

#[test]
fn no_look_ahead_future_bars_do_not_change_the_past() {
    let n = 60;
    let ts = daily(n);
    let (open, close, dir) = walk(n, 7);
    for mode in [Mode::LongOnly, Mode::LongShort] {
        let cfg = ExecConfig {
            mode,
            fee: 0.001,
            slippage: 0.002,
            stops: Default::default(),
        };
        let bars = Bars {
            ts: &ts,
            open: &open,
            close: &close,
            high: &close,
            low: &close,
        };
        let base = simulate("L", bars, &dir, 5..n, 1000.0, &cfg, false).unwrap();
        for t in 5..n - 1 {
            // Change everything after bar t (prices) and from bar t on (dir[t]
            // only decides bar t+1's position).
            let (mut o2, mut c2, mut d2) = (open.clone(), close.clone(), dir.clone());
            for k in t + 1..n {
                o2[k] *= 1.5;
                c2[k] *= 0.5;
            }
            for d in d2.iter_mut().skip(t) {
                *d = -*d;
            }
            let bars2 = Bars {
                ts: &ts,
                open: &o2,
                close: &c2,
                high: &c2,
                low: &c2,
            };
            let alt = simulate("L", bars2, &d2, 5..n, 1000.0, &cfg, false).unwrap();
            let w = t - 5; // index of bar t in the window
            assert_eq!(alt.equity[..=w], base.equity[..=w], "mode {mode}, t {t}");
            assert_eq!(alt.position[..=w], base.position[..=w]);
            assert_eq!(alt.benchmark[..=w], base.benchmark[..=w]);
            let closed_by = |r: &SymbolRun| -> Vec<Trade> {
                r.trades
                    .iter()
                    .filter(|x| x.exit_ts.is_some_and(|e| e <= ts[t]))
                    .cloned()
                    .collect()
            };
            assert_eq!(closed_by(&alt), closed_by(&base));
        }
    }
}

#[test]
fn all_flat_and_one_bar_windows_have_no_nan() {
    let ts = daily(5);
    let bars = Bars {
        ts: &ts,
        open: &OPEN,
        close: &CLOSE,
        high: &CLOSE,
        low: &CLOSE,
    };
    let flat = simulate(
        "F",
        bars,
        &[0; 5],
        0..5,
        1000.0,
        &ExecConfig::default(),
        false,
    )
    .unwrap();
    assert!(flat.trades.is_empty());
    assert_eq!(flat.equity, vec![1000.0; 5]);
    let m = flat.metrics();
    assert_eq!(m.total_return, 0.0);
    assert_eq!(
        (m.sharpe, m.sortino, m.calmar, m.omega),
        (None, None, None, None)
    );
    assert_eq!(m.volatility, Some(0.0));
    assert_eq!(m.max_drawdown, 0.0);
    assert_eq!((m.trades, m.win_rate, m.expectancy), (0, None, None));
    assert_eq!(m.exposure, Some(0.0));
    assert_close!(m.benchmark_return, 0.2);
    let json = serde_json::to_string(&m).unwrap();
    assert!(json.contains("\"sharpe\":null"));
    assert_json_round_trip(&m);

    let one = simulate("O", bars, &DIR, 4..5, 1000.0, &ExecConfig::default(), false).unwrap();
    assert_eq!(one.equity.len(), 1);
    // dir[3] = 1 (the last warm-up bar) → entered at the only bar's open, still open.
    assert_eq!(one.trades.len(), 1);
    assert!(one.trades[0].open);
    let m = one.metrics();
    assert_eq!(m.bars, 1);
    assert_eq!(
        (m.volatility, m.sharpe, m.cagr, m.alpha),
        (None, None, None, None)
    );
    assert_eq!((m.trades, m.open_trades), (0, 1));
    assert_close!(m.open_trade_pnl, one.trades[0].pnl);
    assert_eq!(m.exposure, Some(1.0));
    assert_json_round_trip(&m);
}

#[test]
fn ruined_short_is_liquidated_and_stays_flat_without_nan() {
    // Short at 10; the price goes to 25 at the close (equity −50) and opens at 30.
    let ts = daily(4);
    let open = [10.0, 10.0, 30.0, 30.0];
    let close = [10.0, 25.0, 30.0, 30.0];
    let bars = Bars {
        ts: &ts,
        open: &open,
        close: &close,
        high: &close,
        low: &close,
    };
    let cfg = ExecConfig {
        mode: Mode::LongShort,
        fee: 0.0,
        slippage: 0.0,
        stops: Default::default(),
    };
    let run = simulate("R", bars, &[-1; 4], 0..4, 100.0, &cfg, false).unwrap();
    assert_eq!(run.equity, vec![100.0, -50.0, -100.0, -100.0]);
    assert_eq!(run.position, vec![0.0, -10.0, 0.0, 0.0]);
    assert_eq!(run.trades.len(), 1); // no re-entry after ruin
    assert_eq!(run.trades[0].pnl, -200.0);
    assert_eq!(run.trades[0].exit_reason, ExitReason::Liquidation);
    let m = run.metrics();
    assert_eq!(m.total_return, -2.0);
    assert_eq!(m.cagr, Some(-1.0));
    assert_eq!(m.max_drawdown, 2.0);
    assert_eq!(m.max_gross_exposure, Some(0.0)); // the ruined bar's fraction is undefined
    assert_eq!(m.exposure, Some(0.25));
    assert_eq!(
        (m.omega, m.profit_factor, m.kelly),
        (Some(0.0), Some(0.0), None)
    );
    assert_json_round_trip(&m);
}

fn curve_run(symbol: &str, ts: &[i64], equity: &[f64], bench: &[f64]) -> SymbolRun {
    SymbolRun {
        symbol: symbol.into(),
        capital: 100.0,
        ts: ts.to_vec(),
        equity: equity.to_vec(),
        position: vec![1.0; ts.len()],
        gross: equity.to_vec(),
        benchmark: bench.to_vec(),
        trades: Vec::new(),
        total_fees: 0.0,
    }
}

#[test]
fn portfolio_union_carries_forward_with_ragged_starts() {
    let a = curve_run(
        "A",
        &[1, 2, 3],
        &[110.0, 120.0, 130.0],
        &[101.0, 102.0, 103.0],
    );
    let b = curve_run("B", &[2, 4], &[90.0, 95.0], &[99.0, 98.0]);
    let (p, bench) = portfolio(&[a, b], 100.0);
    assert_eq!(p.ts, vec![1, 2, 3, 4]);
    // B holds its starting cash before ts 2; A carries 130 into ts 4.
    assert_eq!(p.equity, vec![210.0, 210.0, 220.0, 225.0]);
    assert_eq!(p.gross, vec![110.0, 210.0, 220.0, 225.0]);
    assert_eq!(bench.equity, vec![201.0, 201.0, 202.0, 201.0]);
    assert_eq!(bench.gross, vec![101.0, 201.0, 202.0, 201.0]);
    assert_close!(p.exposure()[0], 110.0 / 210.0);
}

#[test]
fn portfolio_sums_in_slice_order() {
    // 1e16 + 1 rounds back to 1e16, so the order of the terms shows in the sum.
    let big = curve_run("A", &[1], &[1e16], &[1e16]);
    let one = curve_run("B", &[1], &[1.0], &[1.0]);
    let neg = curve_run("C", &[1], &[-1e16], &[-1e16]);
    let (p1, _) = portfolio(&[big.clone(), one.clone(), neg.clone()], 100.0);
    let (p2, _) = portfolio(&[big, neg, one], 100.0);
    assert_eq!(p1.equity, vec![0.0]);
    assert_eq!(p2.equity, vec![1.0]);
}

#[test]
fn streamed_portfolio_on_a_superset_timeline_equals_the_union() {
    use atc_bt::backtest::PortfolioSum;
    // Irregular calendars, values whose sums round: any change in which
    // terms a bar receives, or their order, shows in the bits.
    let a = curve_run("A", &[1, 3, 4], &[1e16, 3.0, 0.1], &[0.7, 0.2, 1e-3]);
    let b = curve_run("B", &[2, 4, 6], &[1.0, -1e16, 0.3], &[9.1, 0.3, 7.7]);
    let c = curve_run("C", &[3, 6, 7], &[0.1, 0.2, 1e16], &[1.5, 2.5, 3.5]);
    let runs = [a, b, c];
    let want = portfolio(&runs, 100.0);
    // The timeline of every window, including a refused symbol's bars (5, 8).
    let mut acc = PortfolioSum::new(vec![1, 2, 3, 4, 5, 6, 7, 8], 100.0);
    for r in &runs {
        acc.add(r);
    }
    let got = acc.finish();
    assert_eq!(got.0.ts, vec![1, 2, 3, 4, 6, 7]);
    for (g, w) in [(&got.0, &want.0), (&got.1, &want.1)] {
        assert_eq!(g.ts, w.ts);
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&g.equity), bits(&w.equity));
        assert_eq!(bits(&g.gross), bits(&w.gross));
    }
}

/// `(ts, open, close, dir)` of one symbol.
type Series = (Vec<i64>, Vec<f64>, Vec<f64>, Vec<i8>);

#[test]
fn results_identical_for_any_thread_count() {
    use rayon::prelude::*;
    let n = 80;
    let syms: Vec<Series> = (0..8u64)
        .map(|k| {
            let (o, c, d) = walk(n, k + 1);
            let skip = (k as usize * 3) % 11; // ragged starts
            (
                daily(n)[skip..].to_vec(),
                o[skip..].to_vec(),
                c[skip..].to_vec(),
                d[skip..].to_vec(),
            )
        })
        .collect();
    let cfg = ExecConfig {
        mode: Mode::LongShort,
        ..ExecConfig::default()
    };
    let run_all = |threads: usize| -> (Curve, Curve, Vec<Metrics>) {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let runs: Vec<SymbolRun> = pool.install(|| {
            syms.par_iter()
                .enumerate()
                .map(|(k, (ts, o, c, d))| {
                    let bars = Bars {
                        ts,
                        open: o,
                        close: c,
                        high: c,
                        low: c,
                    };
                    simulate(&format!("S{k}"), bars, d, 2..ts.len(), 100.0, &cfg, false).unwrap()
                })
                .collect()
        });
        let (p, b) = portfolio(&runs, 100.0);
        let ms = runs.iter().map(SymbolRun::metrics).collect();
        (p, b, ms)
    };
    assert_eq!(run_all(1), run_all(4));
}

#[test]
fn return_metrics_on_paper() {
    // initial 100; per-bar returns +10%, −10%, +20%, −10%; Mon..Thu → ppy 252.
    let ts = daily(4);
    let eq = [110.0, 99.0, 118.8, 106.92];
    let m = metrics(100.0, &ts, &eq, &eq, &[], None, 0.0);
    assert_eq!(m.periods_per_year, 252.0);
    assert_close!(m.total_return, 0.0692);
    assert_close!(m.days, 3.0);
    assert_close!(some(m.cagr), 1.0692f64.powf(365.25 / 3.0) - 1.0);
    // mean 0.025; Σ(r−mean)² = 0.0675 → std (ddof 1) = √0.0225 = 0.15.
    assert_close!(some(m.volatility), 0.15 * 252f64.sqrt());
    assert_close!(some(m.sharpe), 0.025 / 0.15 * 252f64.sqrt());
    // downside deviation √((0.01 + 0.01) / 4)
    assert_close!(some(m.sortino), 0.025 / 0.005f64.sqrt() * 252f64.sqrt());
    assert_close!(some(m.omega), 0.3 / 0.2);
    assert_close!(m.max_drawdown, 0.1);
    // Calmar on the geometric annual return (quantstats, empyrical).
    assert_close!(some(m.annual_return), 1.0692f64.powf(252.0 / 4.0) - 1.0);
    assert_close!(some(m.calmar), some(m.annual_return) / 0.1);
    assert_close!(m.equity_peak, 118.8);
    assert_close!(m.final_equity, 106.92);
    assert_close!(m.benchmark_return, 0.0692);
    // Against itself: beta 1, alpha 0.
    assert_close!(some(m.beta), 1.0);
    assert!(some(m.alpha).abs() < 1e-12);
}

#[test]
fn drawdown_episodes_on_paper() {
    // peak 100 (bar 0) → 90, 80, 95 (3 bars, 20% deep, 3 days) → 100, 105 (bar 5)
    // → 94.5 (1 bar, 10% deep, 1 day) → 105, 110.
    let ts = daily(9);
    let eq = [100.0, 90.0, 80.0, 95.0, 100.0, 105.0, 94.5, 105.0, 110.0];
    let m = metrics(100.0, &ts, &eq, &eq, &[], None, 0.0);
    assert_close!(m.max_drawdown, 0.2);
    assert_close!(m.avg_drawdown, 0.15);
    assert_eq!(m.max_drawdown_duration, 3);
    assert_close!(m.max_drawdown_duration_days, 3.0);
    assert_close!(m.avg_drawdown_duration, 2.0);
    assert_close!(m.avg_drawdown_duration_days, 2.0);
    // An episode from the first bar (peak = initial, "at" bar 0) still open at the end.
    let m = metrics(
        100.0,
        &daily(3),
        &[90.0, 95.0, 80.0],
        &[100.0; 3],
        &[],
        None,
        0.0,
    );
    assert_close!(m.max_drawdown, 0.2);
    assert_eq!(m.max_drawdown_duration, 3);
    assert_close!(m.max_drawdown_duration_days, 2.0);
    assert_eq!((m.alpha, m.beta), (None, None)); // flat benchmark: no variance
}

#[test]
fn alpha_beta_by_ols_on_paper() {
    // r = 0.001 + 2·r_b exactly → beta 2, alpha 0.001·ppy.
    let rb = [0.01, -0.02, 0.03, 0.0, 0.015];
    let (mut e, mut b) = (100.0, 100.0);
    let (mut eq, mut bench) = (Vec::new(), Vec::new());
    for x in rb {
        b *= 1.0 + x;
        e *= 1.0 + 0.001 + 2.0 * x;
        bench.push(b);
        eq.push(e);
    }
    let ts = daily(5); // Mon..Fri → 252
    let m = metrics(100.0, &ts, &eq, &bench, &[], None, 0.0);
    assert_close!(some(m.beta), 2.0);
    assert_close!(some(m.alpha), 0.001 * 252.0);
}

fn trade(pnl: f64, bars: usize, open: bool) -> Trade {
    Trade {
        symbol: "T".into(),
        side: Side::Long,
        entry_ts: MON,
        entry_price: 10.0,
        exit_ts: (!open).then_some(MON + bars as i64 * DAY),
        exit_price: 10.0 + pnl / 10.0,
        qty: 10.0,
        fees: 0.0,
        pnl,
        ret: pnl / 100.0,
        bars_held: bars,
        open,
        exit_reason: if open {
            ExitReason::EndOfWindow
        } else {
            ExitReason::Signal
        },
    }
}

#[test]
fn trade_metrics_on_paper() {
    let trades = [
        trade(10.0, 2, false),
        trade(-5.0, 3, false),
        trade(20.0, 4, false),
        trade(-10.0, 5, false),
        trade(7.0, 1, true),
    ];
    let ts = daily(4);
    let eq = [100.0; 4];
    let m = metrics(
        100.0,
        &ts,
        &eq,
        &eq,
        &trades,
        Some(&[0.0, 0.5, 1.0, 0.0]),
        1.5,
    );
    assert_eq!(m.trades, 4);
    assert_close!(some(m.win_rate), 0.5);
    assert_close!(some(m.profit_factor), 30.0 / 15.0);
    assert_close!(some(m.expectancy), 15.0 / 4.0);
    assert_close!(some(m.avg_trade_return), 0.0375);
    // rets 0.1, −0.05, 0.2, −0.1: Σ(x−mean)² = 0.056875.
    assert_close!(some(m.sqn), 2.0 * 0.0375 / (0.056875f64 / 3.0).sqrt());
    assert_close!(some(m.avg_winning_trade), 0.15);
    assert_close!(some(m.avg_losing_trade), -0.075);
    assert_close!(some(m.kelly), 0.5 - 0.5 / (0.15 / 0.075));
    assert_close!(some(m.best_trade), 0.2);
    assert_close!(some(m.worst_trade), -0.1);
    assert_close!(some(m.avg_trade_duration), 3.5);
    assert_eq!(m.max_trade_duration, Some(5));
    assert_close!(some(m.avg_trade_duration_days), 3.5);
    assert_close!(some(m.max_trade_duration_days), 5.0);
    assert_eq!(m.open_trades, 1);
    assert_close!(m.open_trade_pnl, 7.0);
    assert_close!(m.total_fees, 1.5);
    assert_close!(some(m.exposure), 0.5);
    assert_close!(some(m.max_gross_exposure), 1.0);
    // Only winners: no profit factor, Kelly = win rate.
    let m = metrics(100.0, &ts, &eq, &eq, &trades[..1], None, 0.0);
    assert_eq!((m.profit_factor, m.kelly, m.sqn), (None, Some(1.0), None));
    assert_eq!(m.exposure, None);
}

#[test]
fn annualisation_factor_is_reported() {
    let ts = daily(10); // has a weekend
    let m = metrics(100.0, &ts, &[100.0; 10], &[100.0; 10], &[], None, 0.0);
    assert_eq!(m.periods_per_year, 365.0);
    assert_eq!(periods_per_year(&ts), 365.0);
}

#[test]
fn bad_inputs_are_refused_with_context() {
    let ts = daily(5);
    let bars = Bars {
        ts: &ts,
        open: &OPEN,
        close: &CLOSE,
        high: &CLOSE,
        low: &CLOSE,
    };
    let cfg = ExecConfig::default();
    let err = simulate("X", bars, &DIR[..4], 0..5, 1.0, &cfg, false).unwrap_err();
    assert!(matches!(
        err,
        BacktestError::LengthMismatch {
            what: "dir",
            got: 4,
            ..
        }
    ));
    let err = simulate("X", bars, &DIR, 3..3, 1.0, &cfg, false).unwrap_err();
    assert!(err.to_string().contains("X: the window 3..3 is empty"));
    assert!(matches!(
        simulate("X", bars, &DIR, 0..6, 1.0, &cfg, false),
        Err(BacktestError::WindowOutOfRange { .. })
    ));
    assert!(matches!(
        simulate("X", bars, &DIR, 0..5, 0.0, &cfg, false),
        Err(BacktestError::BadCapital { .. })
    ));
    let bad_fee = ExecConfig { fee: -0.1, ..cfg };
    assert!(matches!(
        simulate("X", bars, &DIR, 0..5, 1.0, &bad_fee, false),
        Err(BacktestError::BadConfig { name: "fee", .. })
    ));
    let mut open = OPEN;
    open[2] = f64::NAN;
    let nan = Bars {
        open: &open,
        ..bars
    };
    let err = simulate("X", nan, &DIR, 0..5, 1.0, &cfg, false).unwrap_err();
    assert!(err.to_string().contains("X: open at bar 2"), "{err}");
    // A bad open in the warm-up is never read.
    assert!(simulate("X", nan, &DIR, 3..5, 1.0, &cfg, false).is_ok());
    assert!(matches!(
        simulate("X", bars, &[1, 2, 0, 0, 0], 0..5, 1.0, &cfg, false),
        Err(BacktestError::BadDirection {
            bar: 1,
            value: 2,
            ..
        })
    ));
}

#[test]
fn mode_parses_and_serializes_kebab_case() {
    assert_eq!("long-only".parse::<Mode>().unwrap(), Mode::LongOnly);
    assert_eq!("Long_Short".parse::<Mode>().unwrap(), Mode::LongShort);
    assert!("short".parse::<Mode>().is_err());
    assert_eq!(
        serde_json::to_string(&Mode::LongShort).unwrap(),
        "\"long-short\""
    );
    assert_eq!(Mode::default(), Mode::LongOnly);
    let cfg = ExecConfig::default();
    assert_eq!((cfg.fee, cfg.slippage), (0.0005, 0.0));
    assert_eq!(serde_json::to_string(&Side::Short).unwrap(), "\"short\"");
}

/// `tests/fixtures/quantstats/curve.csv`: `(initial, ts, equity, benchmark)`.
fn quantstats_curve() -> (f64, Vec<i64>, Vec<f64>, Vec<f64>) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/quantstats");
    let text = std::fs::read_to_string(dir.join("curve.csv")).unwrap();
    let mut lines = text.lines();
    let head = lines.next().unwrap();
    let initial: f64 = head
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("initial="))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(lines.next(), Some("ts,equity,benchmark"));
    let (mut ts, mut eq, mut b) = (vec![], vec![], vec![]);
    for l in lines {
        let f: Vec<&str> = l.split(',').collect();
        let d = chrono::NaiveDate::parse_from_str(f[0], "%Y-%m-%d").unwrap();
        ts.push(d.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_micros());
        eq.push(f[1].parse().unwrap());
        b.push(f[2].parse().unwrap());
    }
    (initial, ts, eq, b)
}

/// Every metric with a quantstats equivalent equals quantstats' number on
/// a curve atc-bt wrote (the peer column of METRICS.md, pinned): reference
/// values from `tests/fixtures/quantstats/make_reference.py`.
#[test]
fn metrics_match_quantstats() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/quantstats");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let (initial, ts, eq, bench) = quantstats_curve();
    assert_eq!(initial, r["initial"].as_f64().unwrap());
    let opts = MetricsOptions {
        risk_free: r["risk_free"].as_f64().unwrap(),
        ..MetricsOptions::default()
    };
    let m = metrics_of_stats(initial, &ts, &eq, &bench, &[], None, 0.0, &opts);
    // The inferred calendar is the `periods` quantstats was given.
    assert_eq!(m.periods_per_year, r["periods"].as_f64().unwrap());
    let want = |k: &str| {
        r[k].as_f64()
            .unwrap_or_else(|| panic!("reference lacks {k}"))
    };
    let pairs = [
        ("total_return", Some(m.total_return)),
        ("annual_return", m.annual_return),
        ("volatility", m.volatility),
        ("sharpe", m.sharpe),
        ("sortino", m.sortino),
        ("calmar", m.calmar),
        ("max_drawdown", Some(m.max_drawdown)),
        ("avg_drawdown", Some(m.avg_drawdown)),
        ("skew", m.skew),
        ("kurtosis", m.kurtosis),
        ("var_95", m.var_95),
        ("cvar_95", m.cvar_95),
        ("tail_ratio", m.tail_ratio),
        ("omega", m.omega),
        ("alpha", m.alpha),
        ("beta", m.beta),
    ];
    for (k, v) in pairs {
        let v = v.unwrap_or_else(|| panic!("{k} undefined"));
        assert!(close_to(v, want(k)), "{k}: {v} vs quantstats {}", want(k));
    }
    // Without a risk-free rate.
    let m0 = metrics_of_stats(
        initial,
        &ts,
        &eq,
        &bench,
        &[],
        None,
        0.0,
        &MetricsOptions::default(),
    );
    assert_close!(some(m0.sharpe), want("sharpe_rf0"));
    assert_close!(some(m0.sortino), want("sortino_rf0"));
    // Calendar years and the deepest drawdowns (valley dates, depths).
    let years = r["yearly_returns"].as_object().unwrap();
    assert_eq!(m.yearly_returns.len(), years.len());
    for (y, v) in years {
        let ours = m.yearly_returns[&y.parse::<i32>().unwrap()].unwrap();
        assert_close!(ours, v.as_f64().unwrap());
    }
    let worst = r["worst_drawdowns"].as_array().unwrap();
    assert_eq!(m.worst_drawdowns.len(), worst.len());
    for (d, w) in m.worst_drawdowns.iter().zip(worst) {
        let valley = chrono::DateTime::from_timestamp_micros(d.valley).unwrap();
        assert_eq!(
            valley.format("%Y-%m-%d").to_string(),
            w["valley"].as_str().unwrap()
        );
        assert_close!(d.depth, w["depth"].as_f64().unwrap());
    }
}

/// A price growing by exactly 0.1% a bar: buy & hold's returns are one
/// constant plus float residue, so every ratio over a spread is undefined
/// (the residue gave Sharpe 1.57e14 and volatility 2.3e-15).
#[test]
fn constant_return_ratios_are_null_not_huge() {
    let n = 300;
    let ts = daily(n);
    let close: Vec<f64> = (1..=n).map(|t| 100.0 * 1.001f64.powi(t as i32)).collect();
    let b: Vec<f64> = close.iter().map(|c| 1000.0 * c / 100.0).collect();
    let m = metrics(1000.0, &ts, &b, &b, &[], None, 0.0);
    assert_eq!(m.volatility, Some(0.0));
    assert_eq!(
        (m.sharpe, m.sortino, m.calmar, m.omega),
        (None, None, None, None)
    );
    assert_eq!(
        (m.alpha, m.beta, m.skew, m.kurtosis),
        (None, None, None, None)
    );
    assert!(m.total_return > 0.3);
    // The same with a risk-free rate that nearly cancels the return.
    let opts = MetricsOptions {
        risk_free: 0.44,
        ..MetricsOptions::default()
    };
    let m = metrics_of_stats(1000.0, &ts, &b, &b, &[], None, 0.0, &opts);
    assert_eq!(m.sharpe, None);
    // Trades: equal returns give no SQN; tiny losses no profit factor.
    let t = |pnl: f64, ret: f64| TradeStat {
        ret,
        pnl,
        bars_held: 1,
        entry_ts: 0,
        exit_ts: Some(1),
        open: false,
    };
    let same = [t(10.0, 0.01), t(10.0, 0.01), t(10.0, 0.01)];
    let m = metrics_of_stats(
        1000.0,
        &ts[..2],
        &[1000.0; 2],
        &[1000.0; 2],
        &same,
        None,
        0.0,
        &opts,
    );
    assert_eq!((m.sqn, m.profit_factor, m.payoff_ratio), (None, None, None));
    let residue = [t(10.0, 0.01), t(-1e-14, -1e-17)];
    let m = metrics_of_stats(
        1000.0,
        &ts[..2],
        &[1000.0; 2],
        &[1000.0; 2],
        &residue,
        None,
        0.0,
        &opts,
    );
    assert_eq!((m.profit_factor, m.payoff_ratio), (None, None));
    assert_close!(some(m.kelly), 0.5); // W − (1−W)·|al|/aw → W
}

#[test]
fn new_statistics_on_paper() {
    // initial 100; returns +10%, −10%, +20%, −10% on Mon..Thu.
    let ts = daily(4);
    let eq = [110.0, 99.0, 118.8, 106.92];
    let opts = MetricsOptions {
        risk_free: 0.05,
        ..MetricsOptions::default()
    };
    let m = metrics_of_stats(100.0, &ts, &eq, &eq, &[], None, 0.0, &opts);
    assert_eq!((m.start, m.end), (Some(ts[0]), Some(ts[3])));
    assert_eq!(m.risk_free, 0.05);
    assert_close!(some(m.annual_return), 1.0692f64.powf(252.0 / 4.0) - 1.0);
    // Excess returns: rf per bar (1.05)^(1/252) − 1; std unchanged.
    let rf = 1.05f64.powf(1.0 / 252.0) - 1.0;
    assert_close!(some(m.sharpe), (0.025 - rf) / 0.15 * 252f64.sqrt());
    let down = ((0.1 + rf).powi(2) * 2.0 / 4.0).sqrt();
    assert_close!(some(m.sortino), (0.025 - rf) / down * 252f64.sqrt());
    // Quantiles of [−0.1, −0.1, 0.1, 0.2]: h = 0.15 → −0.1; h = 2.85 → 0.185.
    assert_close!(some(m.var_95), -0.1);
    assert_close!(some(m.cvar_95), -0.1);
    assert_close!(some(m.tail_ratio), 0.185 / 0.1);
    assert_close!(some(m.calmar), some(m.annual_return) / 0.1);
    // Drawdowns: 110 → 99 (peak bar 0, recovered at bar 2), 118.8 → 106.92.
    let d = &m.worst_drawdowns;
    assert_eq!(d.len(), 2);
    assert_eq!(
        (d[0].start, d[0].valley, d[0].recovery),
        (ts[0], ts[1], Some(ts[2]))
    );
    assert_eq!(
        (d[1].start, d[1].valley, d[1].recovery),
        (ts[2], ts[3], None)
    );
    assert_close!(d[1].depth, 0.1);
    assert_eq!(m.yearly_returns.len(), 1);
    assert_close!(m.yearly_returns[&2024].unwrap(), 0.0692);

    // Trades: payoff, streaks and durations of winners and losers.
    let tr = |pnl: f64, bars: usize, exit: usize| TradeStat {
        ret: pnl / 100.0,
        pnl,
        bars_held: bars,
        entry_ts: MON,
        exit_ts: Some(MON + exit as i64 * DAY),
        open: false,
    };
    // Exit order: +, +, −, +, −, − (given out of order).
    let trades = [
        tr(10.0, 2, 1),
        tr(-5.0, 3, 3),
        tr(20.0, 4, 2),
        tr(5.0, 1, 4),
        tr(-10.0, 5, 6),
        tr(-3.0, 1, 5),
    ];
    let m = metrics_of_stats(100.0, &ts, &eq, &eq, &trades, None, 0.0, &opts);
    assert_eq!((m.max_winning_streak, m.max_losing_streak), (2, 2));
    assert_close!(some(m.payoff_ratio), (35.0 / 3.0) / 6.0);
    assert_close!(some(m.avg_winning_trade_duration), 7.0 / 3.0);
    assert_close!(some(m.avg_losing_trade_duration), 3.0);
    assert_close!(some(m.avg_winning_trade_duration_days), 7.0 / 3.0);
    assert_close!(some(m.avg_losing_trade_duration_days), 14.0 / 3.0);
}

#[test]
fn yearly_returns_follow_the_series_zone() {
    // Daily bars at Tokyo midnight around New Year: 2024-01-01 00:00+09
    // is 2023-12-31 15:00 UTC, and belongs to 2024 in Tokyo.
    let ts: Vec<i64> = (0..4)
        .map(|k| MON - 2 * DAY - 9 * 3_600_000_000 + k * DAY)
        .collect();
    let eq = [101.0, 102.0, 103.0, 104.0];
    let tokyo = MetricsOptions {
        calendar: Calendar::from_zone(Some("Asia/Tokyo")).unwrap(),
        ..MetricsOptions::default()
    };
    let m = metrics_of_stats(100.0, &ts, &eq, &eq, &[], None, 0.0, &tokyo);
    let keys: Vec<i32> = m.yearly_returns.keys().copied().collect();
    assert_eq!(keys, vec![2023, 2024]);
    assert_close!(m.yearly_returns[&2023].unwrap(), 0.02);
    assert_close!(m.yearly_returns[&2024].unwrap(), 104.0 / 102.0 - 1.0);
    let utc = metrics(100.0, &ts, &eq, &eq, &[], None, 0.0);
    assert_close!(utc.yearly_returns[&2023].unwrap(), 0.03);
}

/// A symbol whose data ends inside the window is exited at its last close:
/// its trade is closed (`end_of_data`), and from then on its sub-account
/// is cash, outside the portfolio's exposure.
#[test]
fn delisted_symbol_is_closed_and_leaves_the_exposure() {
    let ts = daily(6);
    let open = [10.0, 10.0, 11.0, 12.0, 13.0, 14.0];
    let close = [10.0, 11.0, 12.0, 13.0, 14.0, 15.0];
    let cfg = ExecConfig::default();
    let long = simulate(
        "LONG",
        Bars {
            ts: &ts,
            open: &open,
            close: &close,
            high: &close,
            low: &close,
        },
        &[1; 6],
        0..6,
        1000.0,
        &cfg,
        false,
    )
    .unwrap();
    let gone = simulate(
        "GONE",
        Bars {
            ts: &ts[..3],
            open: &open[..3],
            close: &close[..3],
            high: &close[..3],
            low: &close[..3],
        },
        &[1; 3],
        0..3,
        1000.0,
        &cfg,
        true,
    )
    .unwrap();
    let t = &gone.trades[0];
    assert_eq!(
        (t.open, t.exit_reason, t.exit_ts),
        (false, ExitReason::EndOfData, Some(ts[2]))
    );
    assert_close!(t.exit_price, 12.0);
    let (p, _) = portfolio(&[long.clone(), gone.clone()], 1000.0);
    // GONE's cash is carried; only LONG is exposed after bar 2.
    for k in 3..6 {
        assert_close!(p.equity[k], long.equity[k] + gone.equity[2]);
        assert_close!(p.gross[k], long.gross[k]);
    }
    let x = p.gross[5] / p.equity[5];
    assert_close!(p.exposure()[5], x);
    assert!(x < 0.6, "{x}");
    let m = gone.metrics();
    assert_eq!((m.trades, m.open_trades), (1, 0));
    assert_close!(m.exposure.unwrap(), 1.0 / 3.0);
}
