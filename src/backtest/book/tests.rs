//! Tests of the shared book: a case checked by hand, the cross-check with
//! `simulate` on one symbol, the rebalance ledger, and invariants over
//! random signals and prices.

use proptest::prelude::*;

use super::*;
use crate::backtest::{simulate, Mode};
use crate::synthetic::SplitMix64;

fn close_to(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * (1.0 + b.abs())
}

macro_rules! assert_near {
    ($a:expr, $b:expr) => {{
        let (a, b) = ($a, $b);
        assert!(close_to(a, b), "{} = {a}, expected {b}", stringify!($a));
    }};
}

/// Owned series for building [`BookSymbol`]s.
struct Series {
    name: String,
    ts: Vec<i64>,
    open: Vec<f64>,
    close: Vec<f64>,
    dir: Vec<i8>,
    avg: Vec<f64>,
    data_ends: bool,
}

impl Series {
    fn book(&self) -> BookSymbol<'_> {
        BookSymbol {
            symbol: &self.name,
            bars: Bars {
                ts: &self.ts,
                open: &self.open,
                high: &self.close,
                low: &self.close,
                close: &self.close,
            },
            dir: &self.dir,
            avg: &self.avg,
            window: 0..self.ts.len(),
            data_ends: self.data_ends,
        }
    }
}

fn books(series: &[Series]) -> Vec<BookSymbol<'_>> {
    series.iter().map(Series::book).collect()
}

/// `open[i] = close[i] = p` for each piece `(bars, p)`, except where
/// `opens` overrides an open.
fn prices(pieces: &[(usize, f64)]) -> Vec<f64> {
    pieces
        .iter()
        .flat_map(|&(n, p)| std::iter::repeat_n(p, n))
        .collect()
}

/// 3 symbols, 12 bars, fee 25% (so budgets and notionals stay exact in
/// binary), capital 1000, at most 2 positions, long-only, on-change.
/// Strength: B 0.8 > A 0.5 > C 0.3. Every number below is worked by hand.
///
/// * Bar 0: nothing is held (no decision before the first bar).
/// * Bar 1 open (A 10, B 20, C 5): E = 1000, E/N = 500. B first: budget
///   500 → notional 400, fee 100, qty 20, cash 500. A: buying power
///   = equity 900 − gross 400 = 500 → notional 400, fee 100, qty 40, cash
///   0. C: both slots taken. Close: 40·10 + 20·20 = 800.
/// * Bar 2 open (A 12, B 20, C 6): A's dir went 0 → sold 40 at 12 =
///   480, fee 120, cash 360; A's trade pnl 40·2 − 220 = −140. E = 360 +
///   20·20 = 760, E/N = 380, but buying power is 760 − 400 = 360: C enters
///   sized down to 360 → notional 288, fee 72, qty 48, cash 0. Close (B
///   22, C 6): 20·22 + 48·6 = 728.
/// * Bars 3–5: nothing changes (728).
/// * Bar 6 open (B 24): B's dir went 0 → sold 20 at 24 = 480, fee 120,
///   cash 360; pnl 20·4 − 220 = −140. Close: 360 + 48·6 = 648.
/// * Bar 8 (C's last bar, data ends; close 8): C sold at the close, 48·8
///   = 384, fee 96, cash 648; pnl 48·2 − 168 = −72, 7 bars held.
/// * Bar 9 open (A 16; A's dir back to 1 at bar 8): E = 648, E/N = 324 →
///   notional 259.2, fee 64.8, qty 16.2, cash 324. Close: 324 + 259.2.
/// * Bar 11 close (A 20): 324 + 16.2·20 = 648; A's open trade pnl
///   16.2·4 − 64.8 = 0.
#[test]
fn hand_checked_three_symbols_twelve_bars_fee_and_limit() {
    let ts: Vec<i64> = (0..12).collect();
    let a = Series {
        name: "A".into(),
        ts: ts.clone(),
        open: prices(&[(2, 10.0), (7, 12.0), (3, 16.0)]),
        close: prices(&[(2, 10.0), (7, 12.0), (2, 16.0), (1, 20.0)]),
        dir: [1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1].to_vec(),
        avg: [0.5, 0., 0., 0., 0., 0., 0., 0., 0.5, 0.5, 0.5, 0.5].to_vec(),
        data_ends: false,
    };
    let b = Series {
        name: "B".into(),
        ts: ts.clone(),
        open: prices(&[(3, 20.0), (3, 22.0), (6, 24.0)]),
        close: prices(&[(2, 20.0), (4, 22.0), (6, 24.0)]),
        dir: [1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0].to_vec(),
        avg: [0.8, 0.8, 0.8, 0.8, 0.8, 0., 0., 0., 0., 0., 0., 0.].to_vec(),
        data_ends: false,
    };
    let c = Series {
        name: "C".into(),
        ts: ts[..9].to_vec(),
        open: prices(&[(2, 5.0), (7, 6.0)]),
        close: prices(&[(2, 5.0), (6, 6.0), (1, 8.0)]),
        dir: vec![1; 9],
        avg: vec![0.3; 9],
        data_ends: true,
    };
    let cfg = BookConfig {
        capital: 1000.0,
        exec: ExecConfig {
            stops: Default::default(),
            mode: Mode::LongOnly,
            fee: 0.25,
            slippage: 0.0,
        },
        max_positions: Some(2),
        rebalance: Rebalance::OnChange,
    };
    let series = [a, b, c];
    let run = shared_book(&books(&series), &cfg).unwrap();
    assert_eq!(run.slots, 2);
    let eq = [
        1000.0, 800.0, 728.0, 728.0, 728.0, 728.0, 648.0, 648.0, 648.0, 583.2, 583.2, 648.0,
    ];
    let cash = [
        1000.0, 0.0, 0.0, 0.0, 0.0, 0.0, 360.0, 360.0, 648.0, 324.0, 324.0, 324.0,
    ];
    let gross = [
        0.0, 800.0, 728.0, 728.0, 728.0, 728.0, 288.0, 288.0, 0.0, 259.2, 259.2, 324.0,
    ];
    assert_eq!(run.curve.ts, ts);
    for k in 0..12 {
        assert_near!(run.curve.equity[k], eq[k]);
        assert_near!(run.cash[k], cash[k]);
        assert_near!(run.curve.gross[k], gross[k]);
    }
    assert_eq!(run.held, [0, 2, 2, 2, 2, 2, 1, 1, 0, 1, 1, 1]);
    assert_near!(
        run.total_fees,
        100.0 + 100.0 + 120.0 + 72.0 + 120.0 + 96.0 + 64.8
    );

    let [ra, rb, rc] = [&run.symbols[0], &run.symbols[1], &run.symbols[2]];
    // A: 40 at 10 → 12 (closed), then 16.2 at 16, open at the end.
    assert_eq!(ra.trades.len(), 2);
    let t = &ra.trades[0];
    assert_eq!((t.entry_ts, t.exit_ts, t.bars_held), (1, Some(2), 1));
    assert_eq!((t.entry_price, t.exit_price, t.qty), (10.0, 12.0, 40.0));
    assert_eq!(
        (t.fees, t.pnl, t.exit_reason),
        (220.0, -140.0, ExitReason::Signal)
    );
    let t = &ra.trades[1];
    assert_eq!((t.entry_ts, t.exit_ts, t.open), (9, None, true));
    assert_near!(t.qty, 16.2);
    assert_near!(t.fees, 64.8);
    assert_near!(t.pnl, 0.0);
    assert_eq!((t.exit_price, t.bars_held), (20.0, 3));
    assert_eq!(t.exit_reason, ExitReason::EndOfWindow);
    // B: 20 at 20 → 24.
    assert_eq!(rb.trades.len(), 1);
    let t = &rb.trades[0];
    assert_eq!(
        (t.entry_ts, t.exit_ts, t.qty, t.bars_held),
        (1, Some(6), 20.0, 5)
    );
    assert_eq!((t.fees, t.pnl), (220.0, -140.0));
    // C: left out at bar 1 (two slots), entered sized down at bar 2, out
    // at its last close.
    assert_eq!(rc.trades.len(), 1);
    let t = &rc.trades[0];
    assert_eq!(
        (t.entry_ts, t.exit_ts, t.qty, t.bars_held),
        (2, Some(8), 48.0, 7)
    );
    assert_eq!((t.entry_price, t.exit_price), (6.0, 8.0));
    assert_eq!(
        (t.fees, t.pnl, t.exit_reason),
        (168.0, -72.0, ExitReason::EndOfData)
    );
    assert_eq!((rc.total_fees, rb.total_fees), (168.0, 220.0));
    // Per-bar rows rebuilt from the changes.
    assert_eq!(
        ra.positions(12),
        [0.0, 40.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 16.2, 16.2, 16.2]
    );
    assert_eq!(
        rc.positions(9),
        [0.0, 0.0, 48.0, 48.0, 48.0, 48.0, 48.0, 48.0, 0.0]
    );
    // The contributions (capital/3 + what each symbol made) sum to the equity.
    let third = 1000.0 / 3.0;
    let sa = ra.contribution(&series[0].close, third);
    let sb = rb.contribution(&series[1].close, third);
    let sc = rc.contribution(&series[2].close, third);
    for k in 0..12 {
        let c = sc.get(k).copied().unwrap_or(sc[8]);
        assert_near!(sa[k] + sb[k] + c, eq[k]);
    }
    assert_near!(sc[8], third - 72.0);
}

/// One symbol, one slot per symbol: the book is `simulate` bit for bit
/// (same sizing formula, same order of operations), in both modes, with
/// warm-up, flips, fees, slippage (long-only) and the end of data.
#[test]
fn one_symbol_shared_is_equal_split_exactly() {
    for seed in 0..40u64 {
        let mut rng = SplitMix64::new(seed);
        let s = random_series(&mut rng, "X", 60, 0);
        let mode = if seed % 2 == 0 {
            Mode::LongShort
        } else {
            Mode::LongOnly
        };
        let exec = ExecConfig {
            stops: Default::default(),
            mode,
            fee: 0.001 * (seed % 3) as f64,
            // A short with slippage is sized a little below the cash so
            // that gross ≤ equity (`max_budget`); `simulate` spends it all.
            slippage: if mode == Mode::LongOnly {
                0.0005 * (seed % 4 / 2) as f64
            } else {
                0.0
            },
        };
        let start = (seed % 5) as usize;
        let window = start..s.ts.len();
        let mut sym = s.book();
        sym.window = window.clone();
        sym.data_ends = seed % 4 == 1;
        let cfg = BookConfig {
            capital: 1234.5,
            exec,
            max_positions: None,
            rebalance: Rebalance::OnChange,
        };
        let run = shared_book(std::slice::from_ref(&sym), &cfg).unwrap();
        let bars = sym.bars;
        let alone = simulate(
            "X",
            bars,
            &s.dir,
            window.clone(),
            1234.5,
            &exec,
            sym.data_ends,
        )
        .unwrap();
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&run.curve.equity), bits(&alone.equity), "seed {seed}");
        assert_eq!(bits(&run.curve.gross), bits(&alone.gross), "seed {seed}");
        let book = &run.symbols[0];
        assert_eq!(bits(&book.positions(window.len())), bits(&alone.position));
        assert_eq!(book.trades, alone.trades, "seed {seed}");
        assert_eq!(book.total_fees.to_bits(), alone.total_fees.to_bits());
    }
}

/// Stops in the shared book follow `exec.rs` exactly: one symbol with a
/// stop-loss, a take-profit and a trailing stop (each alone and together),
/// on bars whose high and low reach past the open and close, gives
/// equal-split's account and ledger bit for bit.
#[test]
fn one_symbol_shared_with_stops_is_equal_split_exactly() {
    let mut hits = 0;
    for seed in 0..60u64 {
        let mut rng = SplitMix64::new(seed + 1000);
        let s = random_series(&mut rng, "X", 80, 0);
        let n = s.ts.len();
        let wick = |rng: &mut SplitMix64| 1.0 + 0.03 * rng.next_f64();
        let high: Vec<f64> = (0..n)
            .map(|i| s.open[i].max(s.close[i]) * wick(&mut rng))
            .collect();
        let low: Vec<f64> = (0..n)
            .map(|i| s.open[i].min(s.close[i]) / wick(&mut rng))
            .collect();
        let pick = |k: u64, v: f64| (seed % 4 == k || seed % 4 == 3).then_some(v);
        let stops = crate::backtest::Stops {
            stop_loss: pick(0, 0.02),
            take_profit: pick(1, 0.04),
            trailing_stop: pick(2, 0.03),
        };
        let mode = if seed % 2 == 0 {
            Mode::LongShort
        } else {
            Mode::LongOnly
        };
        let exec = ExecConfig {
            stops,
            mode,
            fee: 0.001 * (seed % 3) as f64,
            slippage: 0.0,
        };
        let mut sym = s.book();
        sym.bars.high = &high;
        sym.bars.low = &low;
        sym.data_ends = seed % 5 == 1;
        let window = sym.window.clone();
        let cfg = BookConfig {
            capital: 1000.0,
            exec,
            max_positions: None,
            rebalance: Rebalance::OnChange,
        };
        let run = shared_book(std::slice::from_ref(&sym), &cfg).unwrap();
        let alone = simulate(
            "X",
            sym.bars,
            &s.dir,
            window.clone(),
            1000.0,
            &exec,
            sym.data_ends,
        )
        .unwrap();
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&run.curve.equity), bits(&alone.equity), "seed {seed}");
        let book = &run.symbols[0];
        assert_eq!(bits(&book.positions(window.len())), bits(&alone.position));
        assert_eq!(book.trades, alone.trades, "seed {seed}");
        hits += alone
            .trades
            .iter()
            .filter(|t| {
                matches!(
                    t.exit_reason,
                    ExitReason::StopLoss | ExitReason::TakeProfit | ExitReason::TrailingStop
                )
            })
            .count();
    }
    assert!(
        hits > 20,
        "only {hits} stop exits: the test would not see a fault"
    );
}

/// With a stop set, periodic rebalancing is refused (a stop exits a whole
/// position; resizes split it into lots).
#[test]
fn stops_with_periodic_rebalance_are_refused() {
    let mut rng = SplitMix64::new(7);
    let s = random_series(&mut rng, "X", 20, 0);
    let cfg = BookConfig {
        capital: 1000.0,
        exec: ExecConfig {
            stops: crate::backtest::Stops {
                stop_loss: Some(0.05),
                ..Default::default()
            },
            ..Default::default()
        },
        max_positions: None,
        rebalance: Rebalance::Weekly,
    };
    let e = shared_book(&[s.book()], &cfg).unwrap_err().to_string();
    assert!(
        e.contains("rebalance with stops") && e.contains("on-change"),
        "{e}"
    );
}

/// Daily rebalance, two slots, no fee: A doubles on day 1; on day 2's open
/// A's position is cut back to half the equity (a `rebalance` trade of
/// the units sold, the rest stays open) and B's grows (a second lot, a
/// new trade).
#[test]
fn rebalance_resizes_with_honest_trades() {
    const D: i64 = DAY_US;
    let ts = vec![0, D, 2 * D, 3 * D];
    let a = Series {
        name: "A".into(),
        ts: ts.clone(),
        open: vec![10.0, 10.0, 20.0, 20.0],
        close: vec![10.0, 20.0, 20.0, 20.0],
        dir: vec![1; 4],
        avg: vec![0.9; 4],
        data_ends: false,
    };
    let b = Series {
        name: "B".into(),
        avg: vec![0.1; 4],
        open: vec![10.0; 4],
        close: vec![10.0; 4],
        ..clone(&a)
    };
    let cfg = BookConfig {
        capital: 1000.0,
        exec: ExecConfig {
            stops: Default::default(),
            fee: 0.0,
            ..ExecConfig::default()
        },
        max_positions: Some(2),
        rebalance: Rebalance::Daily,
    };
    let series = [a, b];
    let run = shared_book(&books(&series), &cfg).unwrap();
    // Day 1: 50 A at 10, 50 B at 10; close: 50·20 + 50·10 = 1500.
    // Day 2 open: E = 1500, target 750 each: A 37.5 units (sell 12.5),
    // B 75 units (buy 25 with the 250 freed).
    assert_eq!(run.curve.equity, [1000.0, 1500.0, 1500.0, 1500.0]);
    assert_eq!(run.cash, [1000.0, 0.0, 0.0, 0.0]);
    let (ra, rb) = (&run.symbols[0], &run.symbols[1]);
    assert_eq!(ra.positions(4), [0.0, 50.0, 37.5, 37.5]);
    assert_eq!(rb.positions(4), [0.0, 50.0, 75.0, 75.0]);
    assert_eq!(ra.trades.len(), 2);
    let cut = &ra.trades[0];
    assert_eq!((cut.qty, cut.exit_price, cut.pnl), (12.5, 20.0, 125.0));
    assert_eq!((cut.exit_reason, cut.open), (ExitReason::Rebalance, false));
    assert_eq!((ra.trades[1].qty, ra.trades[1].open), (37.5, true));
    assert_eq!(rb.trades.len(), 2);
    assert_eq!((rb.trades[1].qty, rb.trades[1].entry_ts), (25.0, 2 * D));
    // The ledger is the account's profit.
    let pnl: f64 = ra.trades.iter().chain(&rb.trades).map(|t| t.pnl).sum();
    assert_eq!(pnl, 500.0);
    // On-change keeps the units.
    let on_change = BookConfig {
        rebalance: Rebalance::OnChange,
        ..cfg
    };
    let run = shared_book(&books(&series), &on_change).unwrap();
    assert_eq!(run.symbols[0].positions(4), [0.0, 50.0, 50.0, 50.0]);
}

fn clone(s: &Series) -> Series {
    Series {
        name: "B".into(),
        ts: s.ts.clone(),
        open: s.open.clone(),
        close: s.close.clone(),
        dir: s.dir.clone(),
        avg: s.avg.clone(),
        data_ends: s.data_ends,
    }
}

#[test]
fn periods_are_utc_days_iso_weeks_and_months() {
    const D: i64 = DAY_US;
    // 2021-01-31 (Sunday) and 2021-02-01 (Monday).
    let sun = 18_658 * D;
    let mon = sun + D;
    assert_ne!(Rebalance::Daily.period(sun), Rebalance::Daily.period(mon));
    assert_ne!(Rebalance::Weekly.period(sun), Rebalance::Weekly.period(mon));
    assert_eq!(
        Rebalance::Weekly.period(mon),
        Rebalance::Weekly.period(mon + 6 * D)
    );
    assert_ne!(
        Rebalance::Monthly.period(sun),
        Rebalance::Monthly.period(mon)
    );
    assert_eq!(
        Rebalance::Monthly.period(mon),
        Rebalance::Monthly.period(mon + 27 * D)
    );
    assert_eq!(Rebalance::OnChange.period(mon), None);
    assert_eq!("Weekly".parse::<Rebalance>().unwrap(), Rebalance::Weekly);
    assert_eq!(
        "equal_split".parse::<Allocation>().unwrap(),
        Allocation::EqualSplit
    );
    let e = "fund".parse::<Allocation>().unwrap_err().to_string();
    assert!(e.contains("equal-split and shared"), "{e}");
}

#[test]
fn zero_positions_and_bad_inputs_are_refused_with_the_symbol() {
    let mut rng = SplitMix64::new(7);
    let mut s = random_series(&mut rng, "BAD", 10, 0);
    let cfg = BookConfig {
        capital: 100.0,
        exec: ExecConfig::default(),
        max_positions: Some(0),
        rebalance: Rebalance::OnChange,
    };
    let e = shared_book(&[s.book()], &cfg).unwrap_err().to_string();
    assert!(e.contains("max_positions"), "{e}");
    s.close[3] = f64::NAN;
    let cfg = BookConfig {
        max_positions: None,
        ..cfg
    };
    let e = shared_book(&[s.book()], &cfg).unwrap_err().to_string();
    assert!(e.starts_with("BAD: close at bar 3"), "{e}");
}

/// A random walk with random directions and strengths; `offset` shifts
/// its timestamps (days) so symbols start and end at different times.
fn random_series(rng: &mut SplitMix64, name: &str, bars: usize, offset: i64) -> Series {
    let mut p = 50.0 + 50.0 * rng.next_f64();
    let (mut open, mut close, mut dir, mut avg) = (vec![], vec![], vec![], vec![]);
    for _ in 0..bars {
        open.push(p * (1.0 + 0.02 * (rng.next_f64() - 0.5)));
        p *= 1.0 + 0.08 * (rng.next_f64() - 0.5);
        close.push(p);
        let d = (rng.next_u64() % 3) as i8 - 1;
        dir.push(d);
        avg.push(if rng.next_f64() < 0.05 {
            f64::NAN
        } else {
            d as f64 * rng.next_f64()
        });
    }
    Series {
        name: name.into(),
        ts: (0..bars as i64).map(|k| (k + offset) * DAY_US).collect(),
        open,
        close,
        dir,
        avg,
        data_ends: false,
    }
}

fn random_book(seed: u64, symbols: usize) -> Vec<Series> {
    let mut rng = SplitMix64::new(seed);
    (0..symbols)
        .map(|k| {
            let offset = (rng.next_u64() % 10) as i64;
            let bars = 5 + (rng.next_u64() % 40) as usize;
            let mut s = random_series(&mut rng, &format!("S{k}"), bars, offset);
            s.data_ends = rng.next_u64().is_multiple_of(3);
            s
        })
        .collect()
}

fn config(seed: u64, long_short: bool, max: Option<usize>, rebalance: u8) -> BookConfig {
    BookConfig {
        capital: 10_000.0,
        exec: ExecConfig {
            stops: Default::default(),
            mode: if long_short {
                Mode::LongShort
            } else {
                Mode::LongOnly
            },
            fee: 0.0005 * (seed % 4) as f64,
            slippage: 0.0002 * (seed % 3) as f64,
        },
        max_positions: max,
        rebalance: [
            Rebalance::OnChange,
            Rebalance::Daily,
            Rebalance::Weekly,
            Rebalance::Monthly,
        ][rebalance as usize % 4],
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Cash ≥ 0 long-only; gross ≤ equity after every open's trades (and
    /// so at each close, marked again); never more than N positions; the
    /// ledger's pnl is the account's profit.
    #[test]
    fn invariants_over_random_signals(
        seed in any::<u64>(),
        n in 1usize..7,
        long_short in any::<bool>(),
        max in proptest::option::of(1usize..5),
        rebalance in 0u8..4,
    ) {
        let series = random_book(seed, n);
        let cfg = config(seed, long_short, max, rebalance);
        let run = shared_book(&books(&series), &cfg).unwrap();
        let slots = max.unwrap_or(n);
        prop_assert_eq!(run.slots, slots);
        for k in 0..run.curve.ts.len() {
            prop_assert!(run.held[k] as usize <= slots);
            if !long_short {
                prop_assert!(run.cash[k] >= -1e-9 * cfg.capital, "cash {}", run.cash[k]);
            }
        }
        // Positions held per bar, from the per-symbol rows.
        let mut count = vec![0usize; run.curve.ts.len()];
        for (s, b) in series.iter().zip(&run.symbols) {
            let pos = b.positions(s.ts.len());
            let mut j = 0;
            for (k, &t) in run.curve.ts.iter().enumerate() {
                while j + 1 < s.ts.len() && s.ts[j + 1] <= t { j += 1; }
                if s.ts[0] <= t && pos[j] != 0.0 { count[k] += 1; }
            }
        }
        for (c, &h) in count.iter().zip(&run.held) {
            prop_assert!(*c <= slots);
            prop_assert_eq!(*c, h as usize);
        }
        if !run.ruined {
            let pnl: f64 = run.symbols.iter().flat_map(|s| &s.trades).map(|t| t.pnl).sum();
            let last = *run.curve.equity.last().unwrap();
            prop_assert!((last - cfg.capital - pnl).abs() <= 1e-6 * cfg.capital,
                "equity {last} vs capital + ledger {}", cfg.capital + pnl);
        }
    }

    /// No leverage: right after an open at which anything was bought or
    /// sold short (an entry or an increase), gross ≤ equity. Checked at
    /// that close with closes equal to opens, so the close marks what the
    /// open traded (between bars prices still move, so a short can drift
    /// past it without a trade). Long-only: at every close.
    #[test]
    fn no_leverage_after_the_open(
        seed in any::<u64>(),
        n in 1usize..7,
        long_short in any::<bool>(),
        max in proptest::option::of(1usize..5),
        rebalance in 0u8..4,
    ) {
        let mut series = random_book(seed, n);
        for s in &mut series { s.close = s.open.clone(); }
        let cfg = config(seed, long_short, max, rebalance);
        let run = shared_book(&books(&series), &cfg).unwrap();
        let mut grew = std::collections::BTreeSet::new();
        for (s, b) in series.iter().zip(&run.symbols) {
            let mut prev = 0.0f64;
            for c in &b.changes {
                if c.units.abs() > prev.abs() { grew.insert(s.ts[c.bar]); }
                prev = c.units;
            }
        }
        for k in 0..run.curve.ts.len() {
            if long_short && !grew.contains(&run.curve.ts[k]) { continue; }
            let (g, e) = (run.curve.gross[k], run.curve.equity[k]);
            prop_assert!(g <= e + 1e-9 * cfg.capital, "bar {}: gross {} > equity {}", k, g, e);
        }
    }

    /// Changing every bar after `cut` changes nothing up to `cut`.
    #[test]
    fn no_look_ahead(
        seed in any::<u64>(),
        n in 1usize..6,
        long_short in any::<bool>(),
        max in proptest::option::of(1usize..4),
        rebalance in 0u8..4,
        cut in 0i64..40,
    ) {
        let mut series = random_book(seed, n);
        for s in &mut series { s.data_ends = false; }
        let cfg = config(seed, long_short, max, rebalance);
        let before = shared_book(&books(&series), &cfg).unwrap();
        let mut rng = SplitMix64::new(seed ^ 0xdead_beef);
        let t_cut = cut * DAY_US;
        for s in &mut series {
            for i in 0..s.ts.len() {
                // Bar i's prices, dir and avg are known at its close.
                if s.ts[i] > t_cut {
                    s.open[i] *= 0.5 + rng.next_f64();
                    s.close[i] *= 0.5 + rng.next_f64();
                    s.dir[i] = (rng.next_u64() % 3) as i8 - 1;
                    s.avg[i] = rng.next_f64();
                }
            }
        }
        let after = shared_book(&books(&series), &cfg).unwrap();
        let upto = before.curve.ts.partition_point(|&t| t <= t_cut);
        prop_assert_eq!(&before.curve.ts[..upto], &after.curve.ts[..upto]);
        prop_assert_eq!(&before.curve.equity[..upto], &after.curve.equity[..upto]);
        prop_assert_eq!(&before.cash[..upto], &after.cash[..upto]);
        for ((b, a), s) in before.symbols.iter().zip(&after.symbols).zip(&series) {
            let upto_bar = s.ts.partition_point(|&t| t <= t_cut);
            let f = |v: &[Change]| v.iter().filter(|c| c.bar < upto_bar).copied().collect::<Vec<_>>();
            prop_assert_eq!(f(&b.changes), f(&a.changes));
        }
    }
}
