//! The metric facts table: one row per statistic (key, label, unit,
//! direction, definition, peer equivalent) that everything naming a metric
//! reads, so adding a metric touches this table and its computation only.
//!
//! Readers: `metrics.json` (the [`Metrics`] serializer writes exactly
//! these keys, in this order), the report's statistics table (labels,
//! units, order), `--rank-by` (valid keys, direction), the sweep's
//! `results.parquet` columns (one per scalar fact, typed by [`Kind`]) and
//! `src/backtest/METRICS.md` (a test checks that it documents every key).
//!
//! The same pattern (a static slice of plain structs, a test that each
//! entry round-trips) serves parameter registries.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};

use super::metrics::{fmt_rfc3339, Drawdown, Metrics};

/// What a number measures, which decides how it is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A fraction shown as a percentage (0.25 = 25%).
    Fraction,
    /// A plain ratio or coefficient.
    Ratio,
    /// Money, in the data's currency.
    Currency,
    /// A number of bars.
    Bars,
    /// Calendar days.
    Days,
    /// A count (trades, streak lengths).
    Count,
    /// Periods per year.
    PerYear,
    /// A point in time.
    Timestamp,
    /// A small table (per year, per drawdown); `metrics.json` only.
    Table,
}

/// Which way is better, for ranking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// Larger values rank first.
    Higher,
    /// Smaller values rank first (drawdowns, volatility, fees).
    Lower,
    /// No direction (a calendar fact); ranked as [`Better::Higher`].
    Neither,
}

/// How a fact is stored: the column type of `results.parquet`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `Float64`, null when undefined.
    Float,
    /// `Int64`, null when undefined.
    Int,
    /// `Timestamp(µs, UTC)`; RFC 3339 text in JSON.
    Time,
    /// Nested JSON; not a column.
    Table,
}

/// A metric's value, borrowed from a [`Metrics`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MetricValue<'a> {
    /// A real number (`None`: undefined).
    Float(Option<f64>),
    /// A whole number.
    Int(Option<u64>),
    /// µs since the epoch, UTC.
    Time(Option<i64>),
    /// Compounded return per calendar year.
    Years(&'a BTreeMap<i32, Option<f64>>),
    /// Drawdown episodes.
    Drawdowns(&'a [Drawdown]),
}

impl MetricValue<'_> {
    /// The value as a number for ranking and charts (`None` for undefined,
    /// timestamps and tables).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetricValue::Float(x) => x.filter(|v| v.is_finite()),
            MetricValue::Int(x) => x.map(|v| v as f64),
            _ => None,
        }
    }
}

impl Serialize for MetricValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            MetricValue::Float(x) => x.filter(|v| v.is_finite()).serialize(s),
            MetricValue::Int(x) => x.serialize(s),
            MetricValue::Time(x) => x.map(fmt_rfc3339).serialize(s),
            MetricValue::Years(y) => y.serialize(s),
            MetricValue::Drawdowns(d) => d.serialize(s),
        }
    }
}

/// A field type of [`Metrics`] and how it reads as a [`MetricValue`].
pub trait FieldValue {
    /// The storage kind of every value of this type.
    const KIND: Kind;
    /// The value.
    fn value(&self) -> MetricValue<'_>;
}

impl FieldValue for f64 {
    const KIND: Kind = Kind::Float;
    fn value(&self) -> MetricValue<'_> {
        MetricValue::Float(Some(*self))
    }
}
impl FieldValue for Option<f64> {
    const KIND: Kind = Kind::Float;
    fn value(&self) -> MetricValue<'_> {
        MetricValue::Float(*self)
    }
}
impl FieldValue for usize {
    const KIND: Kind = Kind::Int;
    fn value(&self) -> MetricValue<'_> {
        MetricValue::Int(Some(*self as u64))
    }
}
impl FieldValue for Option<usize> {
    const KIND: Kind = Kind::Int;
    fn value(&self) -> MetricValue<'_> {
        MetricValue::Int(self.map(|v| v as u64))
    }
}
impl FieldValue for Option<i64> {
    const KIND: Kind = Kind::Time;
    fn value(&self) -> MetricValue<'_> {
        MetricValue::Time(*self)
    }
}
impl FieldValue for BTreeMap<i32, Option<f64>> {
    const KIND: Kind = Kind::Table;
    fn value(&self) -> MetricValue<'_> {
        MetricValue::Years(self)
    }
}
impl FieldValue for Vec<Drawdown> {
    const KIND: Kind = Kind::Table;
    fn value(&self) -> MetricValue<'_> {
        MetricValue::Drawdowns(self)
    }
}

/// The kind of a field, from its accessor (used by the table's macro).
pub const fn kind_of<T: FieldValue>(_field: fn(&Metrics) -> &T) -> Kind {
    T::KIND
}

/// One row of the facts table.
#[derive(Clone, Copy)]
pub struct MetricFact {
    /// The key: field of [`Metrics`], key of `metrics.json`, column of
    /// `results.parquet`, value of `--rank-by`.
    pub key: &'static str,
    /// The report's label.
    pub label: &'static str,
    /// What it measures.
    pub unit: Unit,
    /// Ranking direction.
    pub better: Better,
    /// Storage kind.
    pub kind: Kind,
    /// The formula, in the notation of METRICS.md.
    pub definition: &'static str,
    /// Which peer library gives the same number, and how others differ.
    pub peer: &'static str,
    /// Reads the value from a [`Metrics`].
    pub value: fn(&Metrics) -> MetricValue<'_>,
}

impl std::fmt::Debug for MetricFact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricFact")
            .field("key", &self.key)
            .field("unit", &self.unit)
            .field("better", &self.better)
            .field("kind", &self.kind)
            .finish()
    }
}

impl MetricFact {
    /// `true` if smaller values rank first.
    pub fn lower_is_better(&self) -> bool {
        self.better == Better::Lower
    }

    /// `true` for facts stored as numbers (rankable, a column of
    /// `results.parquet` as a number).
    pub fn is_number(&self) -> bool {
        matches!(self.kind, Kind::Float | Kind::Int)
    }
}

macro_rules! fact {
    ($key:ident, $label:literal, $unit:ident, $better:ident, $def:literal, $peer:literal $(,)?) => {
        MetricFact {
            key: stringify!($key),
            label: $label,
            unit: Unit::$unit,
            better: Better::$better,
            kind: kind_of(|m: &Metrics| &m.$key),
            definition: $def,
            peer: $peer,
            value: |m: &Metrics| FieldValue::value(&m.$key),
        }
    };
}

/// Every metric, in reading order (the order of `metrics.json` and of the
/// report's statistics table).
pub static METRICS: &[MetricFact] = &[
    fact!(start, "Start", Timestamp, Neither,
        "ts of the first bar",
        "backtesting.py `Start`, vectorbt `Start`"),
    fact!(end, "End", Timestamp, Neither,
        "ts of the last bar",
        "backtesting.py `End`, vectorbt `End`"),
    fact!(bars, "Bars", Bars, Neither,
        "n, bars in the curve",
        "vectorbt `Period` (in bars)"),
    fact!(days, "Days", Days, Neither,
        "(ts_last − ts_first) / 1 day",
        "backtesting.py `Duration`"),
    fact!(periods_per_year, "Periods per year", PerYear, Neither,
        "ppy: inferred from the calendar (see Annualisation) or --periods-per-year",
        "quantstats/empyrical `periods`; backtesting.py infers 252/365 with the same weekend rule (daily bars only)"),
    fact!(risk_free, "Risk-free rate", Fraction, Neither,
        "rf, annual, from --risk-free",
        "quantstats `rf`, backtesting.py `risk_free_rate`"),
    fact!(total_return, "Total return", Fraction, Higher,
        "e_last/initial − 1",
        "= backtesting.py `Return [%]`, vectorbt `Total Return [%]`, quantstats `comp`"),
    fact!(benchmark_return, "Buy & hold return", Fraction, Higher,
        "b_last/initial − 1 (bought at the first window open)",
        "vectorbt `Benchmark Return [%]`; backtesting.py `Buy & Hold Return [%]` starts at the first close"),
    fact!(cagr, "CAGR", Fraction, Higher,
        "(e_last/initial)^(365.25/days) − 1; −1 if e_last ≤ 0",
        "= backtesting.py `CAGR [%]` (calendar years); quantstats ≥ 0.0.86 `cagr` is annual_return"),
    fact!(annual_return, "Annual return", Fraction, Higher,
        "(e_last/initial)^(ppy/n) − 1; −1 if e_last ≤ 0",
        "= quantstats `cagr` (≥ 0.0.86), empyrical `annual_return`, vectorbt `Annualized Return`; backtesting.py `Return (Ann.)` compounds its daily returns from the first bar's equity"),
    fact!(volatility, "Volatility (ann.)", Fraction, Lower,
        "std(r)·√ppy",
        "= quantstats `volatility`, empyrical `annual_volatility`, vectorbt `Annualized Volatility`; backtesting.py `Volatility (Ann.)` compounds"),
    fact!(sharpe, "Sharpe", Ratio, Higher,
        "mean(x)/std(x)·√ppy, x = r − ((1+rf)^(1/ppy) − 1)",
        "= quantstats `sharpe`, empyrical `sharpe_ratio`, vectorbt `Sharpe Ratio`; backtesting.py divides `Return (Ann.)` by `Volatility (Ann.)` (GOOG daily 0.83 vs 1.03)"),
    fact!(sortino, "Sortino", Ratio, Higher,
        "mean(x)/√(Σ min(x_t,0)²/n)·√ppy",
        "= quantstats `sortino`, empyrical `sortino_ratio`, vectorbt `Sortino Ratio`; backtesting.py uses its geometric `Return (Ann.)`"),
    fact!(calmar, "Calmar", Ratio, Higher,
        "annual_return/max_drawdown",
        "= quantstats `calmar` (≥ 0.0.86), empyrical `calmar_ratio`, vectorbt `Calmar Ratio`; backtesting.py uses its `Return (Ann.)`"),
    fact!(max_drawdown, "Max drawdown", Fraction, Lower,
        "max_t dd_t, dd_t = 1 − e_t/peak_t, peak_t = max(initial, e_0 … e_t)",
        "= quantstats `max_drawdown`, empyrical, vectorbt, backtesting.py (all negative there)"),
    fact!(avg_drawdown, "Avg drawdown", Fraction, Lower,
        "mean over episodes of each episode's max dd_t; 0 if none",
        "= backtesting.py `Avg. Drawdown [%]`, vectorbt `Avg Drawdown [%]`"),
    fact!(max_drawdown_duration, "Max drawdown duration", Bars, Lower,
        "longest episode, in bars below the peak",
        "vectorbt and backtesting.py measure peak to recovery (one bar more)"),
    fact!(max_drawdown_duration_days, "Max drawdown duration (days)", Days, Lower,
        "longest (ts of last bar below the peak − ts of peak bar)/1 day",
        "backtesting.py `Max. Drawdown Duration` runs to the recovery bar"),
    fact!(avg_drawdown_duration, "Avg drawdown duration", Bars, Lower,
        "mean episode length in bars; 0 if none",
        "as max_drawdown_duration"),
    fact!(avg_drawdown_duration_days, "Avg drawdown duration (days)", Days, Lower,
        "mean episode length in days; 0 if none",
        "as max_drawdown_duration_days"),
    fact!(skew, "Skew", Ratio, Neither,
        "n·√(n−1)/(n−2)·Σa³/(Σa²)^1.5, a = r − mean(r) (bias-corrected G1)",
        "= quantstats `skew` (pandas `Series.skew`)"),
    fact!(kurtosis, "Kurtosis", Ratio, Neither,
        "excess kurtosis G2: n(n+1)(n−1)Σa⁴/((n−2)(n−3)(Σa²)²) − 3(n−1)²/((n−2)(n−3))",
        "= quantstats `kurtosis` (pandas `Series.kurt`)"),
    fact!(var_95, "VaR 95% (hist.)", Fraction, Higher,
        "the 5% quantile of r, linear interpolation (h = (n−1)·0.05)",
        "= empyrical `value_at_risk`, pandas `quantile(0.05)`; quantstats `var` is parametric (normal)"),
    fact!(cvar_95, "CVaR 95% (hist.)", Fraction, Higher,
        "mean of r_t ≤ var_95",
        "= quantstats `cvar(method=\"historical\")`; its default is parametric; empyrical averages the ⌊(n−1)·0.05⌋+1 lowest"),
    fact!(tail_ratio, "Tail ratio", Ratio, Higher,
        "|q95(r)/q05(r)|, linear quantiles",
        "= quantstats `tail_ratio`, empyrical `tail_ratio`"),
    fact!(alpha, "Alpha (ann.)", Fraction, Higher,
        "(mean(r) − beta·mean(r_b))·ppy",
        "= quantstats `greeks` alpha; empyrical compounds it; backtesting.py's is Jensen's on total returns (GOOG 174% vs 10.5%)"),
    fact!(beta, "Beta", Ratio, Neither,
        "Σ(r−mean r)(r_b−mean r_b)/Σ(r_b−mean r_b)²",
        "= quantstats `greeks`, empyrical `beta`; backtesting.py regresses log returns"),
    fact!(omega, "Omega", Ratio, Higher,
        "Σ max(r_t,0)/Σ max(−r_t,0) (threshold 0, no rf)",
        "= quantstats `omega(rf=0)`, empyrical `omega_ratio`, vectorbt `Omega Ratio`"),
    fact!(exposure, "Exposure", Fraction, Neither,
        "share of bars whose gross exposure at the close is ≠ 0",
        "backtesting.py `Exposure Time [%]` also counts each trade's exit bar (GOOG 58.4% vs 55.4%); quantstats `exposure` counts non-zero returns"),
    fact!(max_gross_exposure, "Max gross exposure", Fraction, Neither,
        "max_t Σ|units·close_t|/e_t where e_t > 0",
        "(no peer)"),
    fact!(trades, "Trades", Count, Neither,
        "k, closed trades",
        "= vectorbt `Total Closed Trades`; backtesting.py `# Trades`"),
    fact!(win_rate, "Win rate", Fraction, Higher,
        "#(pnl > 0)/k",
        "= backtesting.py `Win Rate [%]`, vectorbt `Win Rate [%]`; quantstats `win_rate` counts bars"),
    fact!(profit_factor, "Profit factor", Ratio, Higher,
        "Σ pnl⁺/|Σ pnl⁻|",
        "= vectorbt `Profit Factor`; backtesting.py sums trade returns (GOOG 2.49 vs 2.06); quantstats uses bar returns"),
    fact!(expectancy, "Expectancy", Currency, Higher,
        "mean(pnl)",
        "= vectorbt `Expectancy`; backtesting.py `Expectancy [%]` is avg_trade_return"),
    fact!(sqn, "SQN", Ratio, Higher,
        "√k·mean(ret)/std(ret)",
        "vectorbt and backtesting.py use pnl instead of ret (GOOG 1.86 vs 2.18): with full-equity sizing pnl grows with the account"),
    fact!(kelly, "Kelly", Fraction, Higher,
        "W − (1−W)/payoff_ratio, W = win_rate; W if nothing lost",
        "backtesting.py uses mean pnl of wins/losses; quantstats `kelly_criterion` uses bar returns"),
    fact!(payoff_ratio, "Payoff ratio", Ratio, Higher,
        "avg_winning_trade/|avg_losing_trade|",
        "quantstats `payoff_ratio` is the same ratio on bar returns"),
    fact!(avg_trade_return, "Avg trade return", Fraction, Higher,
        "mean(ret)",
        "= backtesting.py `Expectancy [%]`; its `Avg. Trade [%]` is the geometric mean"),
    fact!(best_trade, "Best trade", Fraction, Higher,
        "max(ret)",
        "= backtesting.py `Best Trade [%]`, vectorbt `Best Trade [%]`"),
    fact!(worst_trade, "Worst trade", Fraction, Higher,
        "min(ret)",
        "= backtesting.py `Worst Trade [%]`, vectorbt `Worst Trade [%]`"),
    fact!(avg_winning_trade, "Avg winning trade", Fraction, Higher,
        "mean(ret) of trades with pnl > 0",
        "= vectorbt `Avg Winning Trade [%]`"),
    fact!(avg_losing_trade, "Avg losing trade", Fraction, Higher,
        "mean(ret) of trades with pnl < 0",
        "= vectorbt `Avg Losing Trade [%]`"),
    fact!(avg_trade_duration, "Avg trade duration", Bars, Neither,
        "mean(bars_held)",
        "backtesting.py `Avg. Trade Duration` is calendar time"),
    fact!(avg_trade_duration_days, "Avg trade duration (days)", Days, Neither,
        "mean((exit_ts − entry_ts)/1 day)",
        "= backtesting.py `Avg. Trade Duration`"),
    fact!(max_trade_duration, "Max trade duration", Bars, Neither,
        "max(bars_held)",
        "backtesting.py `Max. Trade Duration` is calendar time"),
    fact!(max_trade_duration_days, "Max trade duration (days)", Days, Neither,
        "max((exit_ts − entry_ts)/1 day)",
        "= backtesting.py `Max. Trade Duration`"),
    fact!(avg_winning_trade_duration, "Avg winning trade duration", Bars, Neither,
        "mean(bars_held) of trades with pnl > 0",
        "vectorbt `Avg Winning Trade Duration` is calendar time"),
    fact!(avg_losing_trade_duration, "Avg losing trade duration", Bars, Neither,
        "mean(bars_held) of trades with pnl < 0",
        "vectorbt `Avg Losing Trade Duration` is calendar time"),
    fact!(avg_winning_trade_duration_days, "Avg winning trade duration (days)", Days, Neither,
        "mean duration in days of trades with pnl > 0",
        "= vectorbt `Avg Winning Trade Duration`"),
    fact!(avg_losing_trade_duration_days, "Avg losing trade duration (days)", Days, Neither,
        "mean duration in days of trades with pnl < 0",
        "= vectorbt `Avg Losing Trade Duration`"),
    fact!(max_winning_streak, "Longest win streak", Count, Higher,
        "most consecutive trades with pnl > 0, in exit order",
        "vectorbt `Trades.winning_streak`; quantstats `consecutive_wins` counts bars"),
    fact!(max_losing_streak, "Longest loss streak", Count, Lower,
        "most consecutive trades with pnl < 0, in exit order",
        "vectorbt `Trades.losing_streak`; quantstats `consecutive_losses` counts bars"),
    fact!(total_fees, "Total fees", Currency, Lower,
        "every fee paid in the window",
        "= vectorbt `Total Fees Paid`, backtesting.py `Commissions [$]`"),
    fact!(open_trades, "Open trades", Count, Neither,
        "trades open at the end of the window",
        "= vectorbt `Total Open Trades`"),
    fact!(open_trade_pnl, "Open trade PnL", Currency, Neither,
        "Σ pnl of open trades, marked at the last close, entry fee deducted",
        "= vectorbt `Open Trade PnL`"),
    fact!(final_equity, "Final equity", Currency, Higher,
        "e_last",
        "= backtesting.py `Equity Final [$]`, vectorbt `End Value`"),
    fact!(equity_peak, "Equity peak", Currency, Neither,
        "max(initial, e_0 … e_last)",
        "= backtesting.py `Equity Peak [$]`"),
    fact!(yearly_returns, "Returns per calendar year", Table, Neither,
        "Π(1 + r_t) − 1 over the bars of each calendar year (in the series' time zone)",
        "= quantstats end-of-year returns (`monthly_returns` EOY)"),
    fact!(worst_drawdowns, "Five deepest drawdowns", Table, Neither,
        "episodes by depth: start (peak bar), valley, recovery (first bar back at the peak), depth, bars, days",
        "= pyfolio `gen_drawdown_table` / vectorbt drawdowns (peak, valley, recovery); quantstats `drawdown_details` starts at the first bar below the peak"),
];

/// The fact named `key`, if any.
pub fn metric_fact(key: &str) -> Option<&'static MetricFact> {
    METRICS.iter().find(|f| f.key == key)
}

/// The value of metric `key` of `m` as a number (`None` for an unknown
/// key, an undefined value, a timestamp or a table).
pub fn metric_value(m: &Metrics, key: &str) -> Option<f64> {
    metric_fact(key).and_then(|f| (f.value)(m).as_f64())
}

/// The facts table as Markdown (key, unit, better, definition, peer), as
/// `src/backtest/METRICS.md` embeds it between its `facts:begin` and
/// `facts:end` markers (a test keeps the two equal).
pub fn markdown_table() -> String {
    let cell = |s: &str| s.replace('|', "\\|");
    let mut t = String::from(
        "| key | label | unit | better | definition | peer equivalent |\n|---|---|---|---|---|---|\n",
    );
    for f in METRICS {
        let unit = match f.unit {
            Unit::Fraction => "fraction",
            Unit::Ratio => "ratio",
            Unit::Currency => "currency",
            Unit::Bars => "bars",
            Unit::Days => "days",
            Unit::Count => "count",
            Unit::PerYear => "per year",
            Unit::Timestamp => "time",
            Unit::Table => "table",
        };
        let better = match f.better {
            Better::Higher => "higher",
            Better::Lower => "lower",
            Better::Neither => "",
        };
        t.push_str(&format!(
            "| `{}` | {} | {unit} | {better} | {} | {} |\n",
            f.key,
            cell(f.label),
            cell(f.definition),
            cell(f.peer)
        ));
    }
    t
}

/// The keys `--rank-by` accepts: every numeric fact.
pub fn rankable_keys() -> impl Iterator<Item = &'static str> {
    METRICS.iter().filter(|f| f.is_number()).map(|f| f.key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backtest::metrics;

    fn sample() -> Metrics {
        let ts: Vec<i64> = (0..6)
            .map(|k| 1_704_067_200_000_000 + k * 86_400_000_000)
            .collect();
        let eq = [101.0, 99.0, 103.0, 98.0, 104.0, 110.0];
        let b = [100.0, 101.0, 100.5, 102.0, 101.0, 103.0];
        metrics(
            100.0,
            &ts,
            &eq,
            &b,
            &[],
            Some(&[0.0, 1.0, 1.0, 0.0, 1.0, 1.0]),
            1.0,
        )
    }

    #[test]
    fn keys_are_unique_and_every_field_is_a_fact() {
        let mut keys: Vec<&str> = METRICS.iter().map(|f| f.key).collect();
        keys.sort();
        let n = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), n, "duplicate key");
        // The serializer writes the facts; the derived deserializer reads
        // the fields: a field without a fact would fail to read back.
        let json = serde_json::to_value(sample()).unwrap();
        assert_eq!(json.as_object().unwrap().len(), METRICS.len());
    }

    #[test]
    fn every_fact_round_trips_through_json() {
        let m = sample();
        let text = serde_json::to_string(&m).unwrap();
        let back: Metrics = serde_json::from_str(&text).unwrap();
        for f in METRICS {
            let (a, b) = ((f.value)(&m), (f.value)(&back));
            match (a.as_f64(), b.as_f64()) {
                // serde_json may be one ulp off when parsing.
                (Some(x), Some(y)) => assert!((x - y).abs() <= 1e-15 * x.abs(), "{}", f.key),
                _ => assert_eq!(a, b, "{}", f.key),
            }
        }
    }

    #[test]
    fn kinds_match_values() {
        let m = sample();
        for f in METRICS {
            let ok = matches!(
                (f.kind, (f.value)(&m)),
                (Kind::Float, MetricValue::Float(_))
                    | (Kind::Int, MetricValue::Int(_))
                    | (Kind::Time, MetricValue::Time(_))
                    | (
                        Kind::Table,
                        MetricValue::Years(_) | MetricValue::Drawdowns(_)
                    )
            );
            assert!(ok, "{}", f.key);
            assert_eq!(f.kind == Kind::Table, f.unit == Unit::Table, "{}", f.key);
            assert!(!f.label.is_empty() && !f.definition.is_empty() && !f.peer.is_empty());
        }
    }

    /// METRICS.md embeds [`markdown_table`]; `UPDATE_METRICS_MD=1 cargo
    /// test --lib facts` rewrites it after a change to the table.
    #[test]
    fn metrics_md_embeds_the_facts_table() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/backtest/METRICS.md");
        let doc = std::fs::read_to_string(&path).unwrap();
        let (begin, end) = ("<!-- facts:begin -->\n", "<!-- facts:end -->");
        let a = doc.find(begin).expect("METRICS.md: no facts:begin marker") + begin.len();
        let b = doc.find(end).expect("METRICS.md: no facts:end marker");
        let want = markdown_table();
        if doc[a..b] != want {
            if std::env::var_os("UPDATE_METRICS_MD").is_some() {
                std::fs::write(&path, format!("{}{want}{}", &doc[..a], &doc[b..])).unwrap();
            } else {
                panic!("METRICS.md's facts table is stale: rerun with UPDATE_METRICS_MD=1");
            }
        }
    }

    #[test]
    fn lookups() {
        let m = sample();
        assert_eq!(metric_value(&m, "bars"), Some(6.0));
        assert_eq!(metric_value(&m, "nope"), None);
        assert_eq!(metric_value(&m, "start"), None);
        assert!(metric_fact("max_drawdown").unwrap().lower_is_better());
        assert!(rankable_keys().any(|k| k == "sharpe"));
        assert!(!rankable_keys().any(|k| k == "yearly_returns" || k == "end"));
    }
}
