//! Shared cash: one account trading every symbol, ranked by ATC strength
//! (`--allocation shared`). Slices in, results out, no I/O.
//!
//! [`simulate`](super::simulate) gives each symbol a fixed sub-account of
//! `capital / N`; here one account with `capital` holds at most
//! `max_positions` positions at a time, chosen by the strength `|avg|` of
//! the symbols whose target is not flat.
//!
//! # Event order
//!
//! The timeline is the sorted union of the symbols' window bars. At each
//! timestamp `t`, for the symbols with a bar at `t` (bar `i` of that
//! symbol), in this order:
//!
//! 1. **Marks at the open.** Each such symbol is valued at `open[i]`; a
//!    symbol without a bar at `t` keeps its last close. Equity
//!    `E = cash + Σ units·mark` (sum over held symbols in input order). If
//!    something is held and `E ≤ 0`, the account is *ruined* (as in
//!    `exec.rs`): every target becomes flat, positions are liquidated at
//!    their symbol's next open ([`ExitReason::Liquidation`]) and nothing is
//!    entered again.
//! 2. **Exits.** The target sign is `mode.target(dir[i−1])`, known at the
//!    close of bar `i−1` (flat at `i = 0`, as in `exec.rs`). A held
//!    position whose target is flat or of the other sign is closed at this
//!    open (a flip is an exit here and an entry in step 4).
//! 3. **Rebalance** (`daily|weekly|monthly` only, on the first timeline
//!    bar of each UTC calendar period): each held position with a bar at
//!    `t` trades back to its target units `E/(N·(1+fee)·open)`: first every
//!    reduction (in input order), then every increase (in rank order,
//!    limited by buying power as an entry is). A change smaller than
//!    [`MIN_TRADE`] of the target is not traded.
//! 4. **Entries.** Candidates are the symbols with a bar at `t`, a
//!    non-flat target and no position, ranked by `|avg[i−1]|` (descending;
//!    ties and NaN last, in input order). While fewer than `N` positions are
//!    held, the next candidate enters with the budget
//!    `min(E/N, buying power)`, where buying power is `equity − gross`
//!    (`gross = Σ |units·mark|`) at that moment (a short with slippage:
//!    a little less, see `max_budget`).
//! 5. **Close.** Each symbol is marked at `close[i]`. A symbol whose data
//!    ends (`data_ends`, see `run::ended_before`) is closed at its last
//!    close ([`ExitReason::EndOfData`]). The curve records equity
//!    `cash + Σ units·close`, gross `Σ |units·close|` and cash.
//!
//! `E` is the equity after the exits of step 2, valued at this open; it is
//! computed once per timestamp, so the entries of one open all target the
//! same `E/N`. Nothing at `t` reads a bar after `t` (tested).
//!
//! # Sizing
//!
//! `N` is `max_positions`, or the number of symbols when it is not given:
//! unused slots stay in cash, and a new entry never forces the others to
//! resize. A budget `b` (cash spent, fee included) buys the notional
//! `b/(1+fee)` at the fill price `open·(1±slippage)`, as in `exec.rs`, so
//! the fee fits inside the budget. No leverage at entry: `b ≤ equity −
//! gross`, which keeps `gross ≤ equity` after every entry fill (a long
//! spends `notional·(1+fee)` of cash; a short reserves its notional: its
//! proceeds are cash but its market value counts in `gross`). In long-only
//! mode `equity − gross` is the cash, so cash never goes below 0 and
//! `gross ≤ equity` at every bar. In long-short mode a losing short can
//! take `gross` above `equity` between trades; nothing is sold to
//! deleverage (only ruin forces exits), as in a margin account.
//!
//! **Partial entries.** When buying power is below `E/N` the entry is
//! sized down to the buying power (the account stays invested, as
//! vectorbt's `cash_sharing` does), unless that is below [`MIN_TRADE`]
//! (1%) of `E/N`: then it is skipped, and the candidate may enter at a
//! later open. The floor keeps rounding residues and almost-full books
//! from writing dust trades whose fees and statistics would be noise.
//!
//! # Ledger
//!
//! A position is a list of lots, each one a [`Trade`] of the ledger.
//! Without rebalancing a position is one lot, so a trade is a round trip
//! exactly as in `exec.rs`. A rebalance that adds units opens a new lot
//! (a new trade entered at that open); one that removes units closes the
//! oldest lots first (FIFO), splitting one if needed (its entry fee is
//! split in proportion to units), and those trades end with
//! [`ExitReason::Rebalance`]. So each ledger row is a real round trip of
//! real units with its real fees, the trade statistics count resizes as
//! what they are, and `Σ pnl` over the ledger (open trades marked at the
//! last close) is the account's profit.
//!
//! # Per-symbol results
//!
//! For each symbol the book keeps its ledger, its fees and the list of
//! [`Change`]s (units held and the symbol's cumulative cash flow after each
//! bar on which it traded), from which [`SymbolBook::positions`] and
//! [`SymbolBook::contribution`] rebuild its per-bar rows one symbol at a time:
//! memory stays the timeline and the ledger, not symbols × bars.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::annualise::DAY_US;
use super::error::BacktestError;
use super::exec::{
    make_trade, stop_exit, validate_dir, validate_inputs, Bars, ExecConfig, Holding,
};
use super::portfolio::Curve;
use super::trade::{ExitReason, Side, Trade};

/// The smallest trade the book makes, as a fraction of the target budget
/// `E/N`: a smaller entry or resize is not traded (see the module docs).
pub const MIN_TRADE: f64 = 0.01;

/// How the capital is shared between symbols (`--allocation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", try_from = "String")]
pub enum Allocation {
    /// Each symbol trades a fixed sub-account of `capital / N` on its own
    /// (`simulate`); the portfolio is their sum. The default.
    #[default]
    EqualSplit,
    /// One account, ranked entries, at most `max_positions` held
    /// ([`shared_book`]).
    Shared,
}

/// When held positions trade back to their target weight (`--rebalance`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", try_from = "String")]
pub enum Rebalance {
    /// Only entries and exits trade; held positions keep their units.
    #[default]
    OnChange,
    /// On the first bar of each UTC day.
    Daily,
    /// On the first bar of each ISO week (Monday, UTC).
    Weekly,
    /// On the first bar of each calendar month (UTC).
    Monthly,
}

macro_rules! choice {
    ($ty:ty, $what:literal, $valid:literal, [$(($v:path, $name:literal)),+]) => {
        impl $ty {
            /// The CLI/TOML spelling.
            pub fn name(self) -> &'static str {
                match self { $($v => $name),+ }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
        impl TryFrom<String> for $ty {
            type Error = BacktestError;
            /// As [`FromStr`]: strategy files take any letter case too.
            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }
        impl FromStr for $ty {
            type Err = BacktestError;
            /// Any letter case, `_` for `-`.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
                    $($name => Ok($v),)+
                    _ => Err(BacktestError::BadChoice {
                        what: $what,
                        value: s.to_string(),
                        valid: $valid,
                    }),
                }
            }
        }
    };
}

choice!(
    Allocation,
    "allocation",
    "equal-split and shared",
    [
        (Allocation::EqualSplit, "equal-split"),
        (Allocation::Shared, "shared")
    ]
);
choice!(
    Rebalance,
    "rebalance",
    "on-change, daily, weekly and monthly",
    [
        (Rebalance::OnChange, "on-change"),
        (Rebalance::Daily, "daily"),
        (Rebalance::Weekly, "weekly"),
        (Rebalance::Monthly, "monthly")
    ]
);

impl Rebalance {
    /// The UTC calendar period of `ts` (µs): equal keys, same period;
    /// `None` for [`Rebalance::OnChange`].
    fn period(self, ts: i64) -> Option<i64> {
        let day = ts.div_euclid(DAY_US);
        match self {
            Rebalance::OnChange => None,
            Rebalance::Daily => Some(day),
            // 1970-01-01 was a Thursday: +3 puts Mondays on multiples of 7.
            Rebalance::Weekly => Some((day + 3).div_euclid(7)),
            Rebalance::Monthly => Some(match chrono::DateTime::from_timestamp_micros(ts) {
                Some(t) => {
                    use chrono::Datelike;
                    i64::from(t.year()) * 12 + i64::from(t.month0())
                }
                None => day, // out of chrono's range: never for validated data
            }),
        }
    }
}

/// The shared account's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BookConfig {
    /// Starting cash of the one account.
    pub capital: f64,
    /// Mode, fee and slippage, as for `simulate`.
    pub exec: ExecConfig,
    /// At most this many positions (≥ 1); `None`: one slot per symbol.
    pub max_positions: Option<usize>,
    /// When held positions are resized.
    pub rebalance: Rebalance,
}

/// One symbol's input to the book: the series the engine saw, as for
/// `simulate`, plus its average signal (the strength is `|avg|`).
#[derive(Debug, Clone)]
pub struct BookSymbol<'a> {
    /// The symbol (names errors and trades).
    pub symbol: &'a str,
    /// Its bars (warm-up + window, same length as `dir` and `avg`).
    pub bars: Bars<'a>,
    /// Direction per bar (−1, 0, 1).
    pub dir: &'a [i8],
    /// Average signal per bar; NaN ranks last.
    pub avg: &'a [f64],
    /// The traded bars (index range into `bars`).
    pub window: Range<usize>,
    /// The data ends at the window's last bar while the run goes on.
    pub data_ends: bool,
}

/// A symbol's state after a bar on which it traded: `bar` indexes its
/// window (0 = first window bar).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Change {
    /// Window bar.
    pub bar: usize,
    /// Units held after that bar (signed).
    pub units: f64,
    /// The symbol's cumulative cash flow after that bar: what its fills
    /// added to (−) or took from the account's cash, fees included.
    pub flow: f64,
}

/// One symbol's part of the shared account.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SymbolBook {
    /// The symbol.
    pub symbol: String,
    /// Its ledger (one trade per lot), closed trades in closing order,
    /// open lots last.
    pub trades: Vec<Trade>,
    /// Fees it paid.
    pub total_fees: f64,
    /// Its units and cash flow after each bar on which it traded.
    pub changes: Vec<Change>,
}

impl SymbolBook {
    /// Units held at each of `bars` window closes.
    pub fn positions(&self, bars: usize) -> Vec<f64> {
        self.expand(bars, |c| c.units)
    }

    /// The symbol's contribution at each window close: `initial + flow +
    /// units·close`, i.e. `initial` plus everything the symbol has made or
    /// lost so far (fees included). With `initial = capital / symbols`
    /// the contributions sum to the account's equity (up to rounding);
    /// with `initial = capital`, their returns sum to the account's.
    /// `close`: the window's closes.
    pub fn contribution(&self, close: &[f64], initial: f64) -> Vec<f64> {
        let flows = self.expand(close.len(), |c| c.flow);
        let units = self.positions(close.len());
        close
            .iter()
            .zip(flows.iter().zip(&units))
            .map(|(c, (f, u))| initial + f + u * c)
            .collect()
    }

    fn expand(&self, bars: usize, field: impl Fn(&Change) -> f64) -> Vec<f64> {
        let mut out = Vec::with_capacity(bars);
        let mut value = 0.0;
        let mut next = self.changes.iter().peekable();
        for b in 0..bars {
            while let Some(c) = next.next_if(|c| c.bar <= b) {
                value = field(c);
            }
            out.push(value);
        }
        out
    }
}

/// The shared account's result.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SharedRun {
    /// Equity and gross exposure at each timeline close (the union of the
    /// symbols' window bars). Capital utilisation is
    /// [`Curve::exposure`] (`gross / equity`).
    pub curve: Curve,
    /// Cash at each timeline close.
    pub cash: Vec<f64>,
    /// Positions held at each timeline close.
    pub held: Vec<u32>,
    /// Per symbol, in input order.
    pub symbols: Vec<SymbolBook>,
    /// Every fee paid.
    pub total_fees: f64,
    /// The number of slots `N` each position's `1/N` refers to.
    pub slots: usize,
    /// Whether the account was ruined (equity ≤ 0 at an open).
    pub ruined: bool,
}

/// Checks one symbol's input as `simulate` would (lengths, window, prices,
/// timestamps, directions) and `avg`'s length: the error names the symbol
/// and the bar.
pub fn check_symbol(s: &BookSymbol<'_>, cfg: &BookConfig) -> Result<(), BacktestError> {
    validate_inputs(
        s.symbol,
        &s.bars,
        s.dir.len(),
        &s.window,
        cfg.capital,
        &cfg.exec,
    )?;
    if s.avg.len() != s.bars.ts.len() {
        return Err(BacktestError::LengthMismatch {
            symbol: s.symbol.to_string(),
            what: "avg",
            expected: s.bars.ts.len(),
            got: s.avg.len(),
        });
    }
    validate_dir(s.symbol, s.dir, &s.window)
}

/// A symbol's running state.
struct Slot {
    /// Next window bar to read.
    next: usize,
    /// Lots held, oldest first (all of one side).
    lots: Vec<Holding>,
    /// Units held (signed).
    units: f64,
    /// Last price seen (open at an open, close at a close).
    mark: f64,
    /// Cumulative cash flow.
    flow: f64,
    /// Traded on the current timestamp.
    dirty: bool,
    /// The target sign a stop exited (module docs, *Stops*): treated as
    /// flat until the target changes; 0 when none.
    stopped: i8,
    out: SymbolBook,
}

impl Slot {
    fn sign(&self) -> i8 {
        match self.lots.first() {
            Some(h) if h.side == Side::Long => 1,
            Some(_) => -1,
            None => 0,
        }
    }
}

/// Sums `cash + Σ units·mark` and `Σ |units·mark|` over the held symbols
/// in input order.
fn value(cash: f64, held: &[usize], slots: &[Slot]) -> (f64, f64) {
    let (mut eq, mut gross) = (cash, 0.0);
    for &s in held {
        let v = slots[s].units * slots[s].mark;
        eq += v;
        gross += v.abs();
    }
    (eq, gross)
}

/// Runs the shared account; see the module docs for the event order,
/// sizing, ledger and ruin rules. Every symbol is checked first
/// ([`check_symbol`]): the first bad one is the error.
pub fn shared_book(
    symbols: &[BookSymbol<'_>],
    cfg: &BookConfig,
) -> Result<SharedRun, BacktestError> {
    if cfg.max_positions == Some(0) {
        return Err(BacktestError::BadConfig {
            name: "max_positions",
            value: 0.0,
            range: "at least 1 (or not given: one slot per symbol)",
        });
    }
    for s in symbols {
        check_symbol(s, cfg)?;
    }
    let e = &cfg.exec;
    let stops = !e.stops.is_none();
    if stops && cfg.rebalance != Rebalance::OnChange {
        return Err(BacktestError::BadChoice {
            what: "rebalance with stops",
            value: cfg.rebalance.name().into(),
            valid: "on-change (a stop exits a whole position; periodic resizes would split it into lots with their own entry prices)",
        });
    }
    let n_slots = cfg.max_positions.unwrap_or(symbols.len()).max(1);
    let mut timeline: Vec<i64> = symbols
        .iter()
        .flat_map(|s| s.bars.ts[s.window.clone()].iter().copied())
        .collect();
    timeline.sort_unstable();
    timeline.dedup();

    let mut slots: Vec<Slot> = symbols
        .iter()
        .map(|s| Slot {
            next: s.window.start,
            lots: Vec::new(),
            units: 0.0,
            mark: s.bars.close[s.window.start],
            flow: 0.0,
            stopped: 0,
            dirty: false,
            out: SymbolBook {
                symbol: s.symbol.to_string(),
                ..SymbolBook::default()
            },
        })
        .collect();
    let mut run = SharedRun {
        slots: n_slots,
        ..SharedRun::default()
    };
    let mut cash = cfg.capital;
    let mut held: Vec<usize> = Vec::new(); // sorted symbol indices
    let mut ruined = false;
    let mut period: Option<i64> = None;
    let mut at: Vec<(usize, usize)> = Vec::new();

    for &t in &timeline {
        at.clear();
        for (k, s) in symbols.iter().enumerate() {
            let i = slots[k].next;
            if i < s.window.end && s.bars.ts[i] == t {
                at.push((k, i));
                slots[k].mark = s.bars.open[i];
            }
        }
        let target = |k: usize, i: usize, ruined: bool| -> i8 {
            if ruined || i == 0 {
                0
            } else {
                e.mode.target(symbols[k].dir[i - 1])
            }
        };
        // 1. Ruin.
        if !held.is_empty() && value(cash, &held, &slots).0 <= 0.0 {
            ruined = true;
        }
        // A stopped symbol waits for its target to change.
        for &(k, i) in &at {
            if slots[k].stopped != 0 && target(k, i, ruined) != slots[k].stopped {
                slots[k].stopped = 0;
            }
        }
        // 2. Exits. (`held` drops the emptied symbols in one pass.)
        let mut emptied = false;
        for &(k, i) in &at {
            let sign = slots[k].sign();
            if sign != 0 && sign != target(k, i, ruined) {
                let reason = if ruined {
                    ExitReason::Liquidation
                } else {
                    ExitReason::Signal
                };
                let s = &symbols[k];
                let open = s.bars.open[i];
                let slot = &mut slots[k];
                for h in std::mem::take(&mut slot.lots) {
                    cash += close_lot(slot, s, &h, h.qty, open, e, (i, i, reason));
                }
                slot.units = 0.0;
                emptied = true;
            }
        }
        if emptied {
            held.retain(|&x| !slots[x].lots.is_empty());
        }
        let (equity, _) = value(cash, &held, &slots);
        if equity <= 0.0 {
            ruined = true;
        }
        let budget_target = equity / n_slots as f64;
        // 3. Rebalance on the first bar of a period.
        let p = cfg.rebalance.period(t);
        let new_period = p.is_some() && p != period;
        period = p;
        if new_period && !ruined {
            let mut ups: Vec<(usize, usize, f64)> = Vec::new();
            for &(k, i) in &at {
                if slots[k].lots.is_empty() {
                    continue;
                }
                let open = symbols[k].bars.open[i];
                let want = budget_target / ((1.0 + e.fee) * open);
                let have = slots[k].units.abs();
                let delta = want - have;
                if delta.abs() * open < MIN_TRADE * budget_target {
                    continue;
                }
                if delta < 0.0 {
                    let s = &symbols[k];
                    let slot = &mut slots[k];
                    let mut left = -delta;
                    while left > 0.0 && !slot.lots.is_empty() {
                        let h = slot.lots[0].clone();
                        let q = left.min(h.qty);
                        cash += close_lot(slot, s, &h, q, open, e, (i, i, ExitReason::Rebalance));
                        left -= q;
                        if q >= h.qty {
                            slot.lots.remove(0);
                        } else {
                            let lot = &mut slot.lots[0];
                            lot.entry_fee -= h.entry_fee * q / h.qty;
                            lot.qty -= q;
                        }
                    }
                    slot.units = slot.lots.iter().map(|h| h.side.sign() * h.qty).sum();
                    emptied |= slot.lots.is_empty();
                } else {
                    ups.push((k, i, delta));
                }
            }
            if emptied {
                held.retain(|&x| !slots[x].lots.is_empty());
            }
            rank(&mut ups, symbols, |&(k, i, _)| (k, i));
            // Equity and gross kept up to date fill by fill (summing
            // every held symbol per fill made large books quadratic).
            let (mut eq, mut gross) = value(cash, &held, &slots);
            for (k, i, delta) in ups {
                let open = symbols[k].bars.open[i];
                let side = slots[k].lots[0].side;
                let price = fill_price(side, open, e.slippage);
                let budget = (delta * price * (1.0 + e.fee)).min(max_budget(side, eq - gross, e));
                if budget < MIN_TRADE * budget_target {
                    continue;
                }
                let before = slots[k].units * open;
                let d = enter(&mut slots[k], side, i, price, budget, e.fee);
                let after = slots[k].units * open;
                cash += d;
                eq += d + after - before;
                gross += after.abs() - before.abs();
            }
        }
        // 4. Entries, in rank order, while slots and buying power last
        // (nothing to rank while every slot is taken).
        if !ruined && held.len() < n_slots {
            let mut cands: Vec<(usize, usize)> = at
                .iter()
                .copied()
                .filter(|&(k, i)| {
                    let t = target(k, i, false);
                    slots[k].lots.is_empty() && t != 0 && t != slots[k].stopped
                })
                .collect();
            rank(&mut cands, symbols, |&c| c);
            let (mut eq, mut gross) = value(cash, &held, &slots);
            let before = held.len();
            for (k, i) in cands {
                if held.len() >= n_slots {
                    break;
                }
                let side = if target(k, i, false) > 0 {
                    Side::Long
                } else {
                    Side::Short
                };
                let budget = budget_target.min(max_budget(side, eq - gross, e));
                if !(budget > 0.0 && budget >= MIN_TRADE * budget_target) {
                    continue;
                }
                let open = symbols[k].bars.open[i];
                let price = fill_price(side, open, e.slippage);
                let d = enter(&mut slots[k], side, i, price, budget, e.fee);
                let v = slots[k].units * open;
                cash += d;
                eq += d + v;
                gross += v.abs();
                held.push(k);
            }
            if held.len() > before {
                held.sort_unstable();
            }
        }
        // 5. Stops, against this bar's range (as `exec.rs`: from the
        // entry bar on; a position is one lot, rebalancing being refused
        // with stops).
        let mut emptied = false;
        if stops {
            for &(k, i) in &at {
                let s = &symbols[k];
                let slot = &mut slots[k];
                let Some(h) = slot.lots.first().cloned() else {
                    continue;
                };
                let (open, close) = (s.bars.open[i], s.bars.close[i]);
                let range = (
                    s.bars.low[i].min(open).min(close),
                    s.bars.high[i].max(open).max(close),
                );
                if let Some((quote, why)) = stop_exit(&h, &e.stops, open, range) {
                    cash += close_lot(slot, s, &h, h.qty, quote, e, (i, i + 1, why));
                    slot.lots.clear();
                    slot.units = 0.0;
                    slot.stopped = h.side.sign() as i8;
                    emptied = true;
                } else {
                    let lot = &mut slot.lots[0];
                    lot.extreme = match lot.side {
                        Side::Long => lot.extreme.max(range.1),
                        Side::Short => lot.extreme.min(range.0),
                    };
                }
            }
        }
        // 6. Close.
        for &(k, i) in &at {
            let s = &symbols[k];
            let close = s.bars.close[i];
            let slot = &mut slots[k];
            slot.mark = close;
            slot.next = i + 1;
            if s.data_ends && i + 1 == s.window.end && !slot.lots.is_empty() {
                for h in std::mem::take(&mut slot.lots) {
                    let exit = (i, i + 1, ExitReason::EndOfData);
                    cash += close_lot(slot, s, &h, h.qty, close, e, exit);
                }
                slot.units = 0.0;
                emptied = true;
            }
            if slot.dirty {
                slot.dirty = false;
                slot.out.changes.push(Change {
                    bar: i - s.window.start,
                    units: slot.units,
                    flow: slot.flow,
                });
            }
        }
        if emptied {
            held.retain(|&x| !slots[x].lots.is_empty());
        }
        let (eq, gross) = value(cash, &held, &slots);
        run.curve.ts.push(t);
        run.curve.equity.push(eq);
        run.curve.gross.push(gross);
        run.cash.push(cash);
        run.held.push(held.len() as u32);
    }

    for (k, mut slot) in slots.into_iter().enumerate() {
        let s = &symbols[k];
        let last = s.window.end - 1;
        let price = s.bars.close[last];
        let ts = &s.bars.ts[s.window.clone()];
        for h in &slot.lots {
            let mut t = make_trade(
                s.symbol,
                h,
                (ts, s.window.start),
                (last, last + 1, ExitReason::EndOfWindow),
                price,
                0.0,
            );
            t.exit_ts = None;
            t.open = true;
            slot.out.trades.push(t);
        }
        run.total_fees += slot.out.total_fees;
        run.symbols.push(slot.out);
    }
    run.ruined = ruined;
    Ok(run)
}

/// Sorts candidates by strength `|avg[i−1]|`, strongest first; ties and
/// NaN (no strength) after, in input order.
fn rank<T: Copy>(items: &mut [T], symbols: &[BookSymbol<'_>], key: impl Fn(&T) -> (usize, usize)) {
    let strength = |item: &T| {
        let (k, i) = key(item);
        let a = symbols[k].avg[i.saturating_sub(1)].abs();
        if a.is_nan() {
            f64::NEG_INFINITY
        } else {
            a
        }
    };
    // Symbol indices are unique, so (strength, index) is a total order
    // and an unstable sort gives one result.
    let mut keyed: Vec<(f64, usize, T)> =
        items.iter().map(|x| (strength(x), key(x).0, *x)).collect();
    keyed.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    for (slot, (_, _, x)) in items.iter_mut().zip(keyed) {
        *slot = x;
    }
}

/// The largest budget (cash spent, fee included) a trade opening `side`
/// may use with buying power `bp = equity − gross`, so that gross ≤
/// equity after it, marked at the open. A long of notional `n` costs
/// `n·(1+fee)` of cash and adds `n/(1+s)` to gross, so the budget is `bp`.
/// A short sold at `open·(1−s)` is marked at `open`: its market value is
/// `n/(1−s)` and equity loses the slippage `n·s/(1−s)` with the fee, so
/// `n ≤ bp / ((1+s)/(1−s) + fee)`; without slippage that is `bp` again.
fn max_budget(side: Side, bp: f64, e: &ExecConfig) -> f64 {
    if side == Side::Short && e.slippage > 0.0 {
        let s = e.slippage;
        bp * (1.0 + e.fee) / ((1.0 + s) / (1.0 - s) + e.fee)
    } else {
        bp
    }
}

/// The fill price of a trade opening (or adding to) `side` at `quote`.
fn fill_price(side: Side, quote: f64, slippage: f64) -> f64 {
    match side {
        Side::Long => quote * (1.0 + slippage),
        Side::Short => quote * (1.0 - slippage),
    }
}

/// Opens a lot of `side` at bar `i` with `budget` (fee inside: the
/// notional is `budget/(1+fee)`, as `exec.rs` sizes from cash); returns
/// what it adds to the cash.
fn enter(slot: &mut Slot, side: Side, i: usize, price: f64, budget: f64, fee: f64) -> f64 {
    let notional = budget / (1.0 + fee);
    let fee_paid = fee * notional;
    let delta = -(side.sign() * notional + fee_paid);
    let qty = notional / price;
    slot.lots.push(Holding {
        side,
        entry_bar: i,
        entry_price: price,
        qty,
        entry_fee: fee_paid,
        extreme: price,
    });
    slot.units += side.sign() * qty;
    slot.flow += delta;
    slot.out.total_fees += fee_paid;
    slot.dirty = true;
    delta
}

/// Closes `qty` units of lot `h` at `quote` (an open, or the last close),
/// fill and fee as `exec.rs`; records the trade (its entry fee in
/// proportion to `qty`) and returns what it adds to the cash.
fn close_lot(
    slot: &mut Slot,
    s: &BookSymbol<'_>,
    h: &Holding,
    qty: f64,
    quote: f64,
    e: &ExecConfig,
    exit: (usize, usize, ExitReason),
) -> f64 {
    let price = match h.side {
        Side::Long => quote * (1.0 - e.slippage),
        Side::Short => quote * (1.0 + e.slippage),
    };
    let part = if qty >= h.qty {
        h.clone()
    } else {
        Holding {
            qty,
            entry_fee: h.entry_fee * qty / h.qty,
            ..h.clone()
        }
    };
    let notional = part.qty * price;
    let exit_fee = e.fee * notional;
    let ts = &s.bars.ts[s.window.clone()];
    let trade = make_trade(s.symbol, &part, (ts, s.window.start), exit, price, exit_fee);
    slot.out.trades.push(trade);
    slot.out.total_fees += exit_fee;
    let delta = h.side.sign() * notional - exit_fee;
    slot.flow += delta;
    if qty >= h.qty {
        slot.units -= h.side.sign() * h.qty;
    }
    slot.dirty = true;
    delta
}

#[cfg(test)]
mod tests;
