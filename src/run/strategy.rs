//! Strategy files (`strategies/*.toml`): the ATC parameters under `[atc]`
//! (the spec's names and defaults), the execution settings under
//! `[execution]` and how statistics are annualised under `[metrics]`.
//! Every key is optional; unknown keys and out-of-range values are errors
//! naming the key and the file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::backtest::book::{Allocation, Rebalance};
use crate::backtest::{Calendar, ExecConfig, MetricsOptions, Mode, Stops};
use crate::engine::{AtcParams, EngineError};

/// The shipped default strategy; identical to the spec defaults, and used
/// when no `--strategy` is given (embedded, so it works from any directory).
pub const DEFAULT_STRATEGY_TOML: &str = include_str!("../../strategies/atc_default.toml");

/// Execution settings of a strategy, in the units a trader types.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Execution {
    /// `long-only` (default) trades `max(dir, 0)`; `long-short` trades `dir`.
    pub mode: Mode,
    /// Fee in basis points of traded notional (5 = 0.0005).
    pub fee_bps: f64,
    /// Slippage in basis points: buys fill at `open·(1+s)`, sells at `open·(1−s)`.
    pub slippage_bps: f64,
    /// Starting capital: split equally over the symbols with data in the
    /// window (`equal-split`), or one account (`shared`).
    pub capital: f64,
    /// Stop-loss in percent of the entry fill price (5 = exit a long 5%
    /// below its entry); absent: none. Left out of the serialized strategy
    /// (run.json, input hashes) when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_loss: Option<f64>,
    /// Take-profit in percent of the entry fill price (10 = exit a long
    /// 10% above its entry); absent: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub take_profit: Option<f64>,
    /// Trailing stop in percent below the highest high since the entry
    /// (short: above the lowest low); absent: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trailing_stop: Option<f64>,
    /// `equal-split` (default: a fixed sub-account per symbol) or `shared`
    /// (one account, ranked by strength; `backtest::book`). Written to
    /// `run.json` and the input hashes only when not the default, so
    /// existing runs keep their hashes.
    #[serde(skip_serializing_if = "is_default")]
    pub allocation: Allocation,
    /// Shared cash: at most this many positions, each `1/N` of equity
    /// (absent: one slot per symbol).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_positions: Option<usize>,
    /// Shared cash: `on-change` (default), `daily`, `weekly` or `monthly`.
    #[serde(skip_serializing_if = "is_default")]
    pub rebalance: Rebalance,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

impl Default for Execution {
    fn default() -> Self {
        Execution {
            mode: Mode::LongOnly,
            fee_bps: 5.0,
            slippage_bps: 0.0,
            capital: 100_000.0,
            stop_loss: None,
            take_profit: None,
            trailing_stop: None,
            allocation: Allocation::EqualSplit,
            max_positions: None,
            rebalance: Rebalance::OnChange,
        }
    }
}

/// The most positions shared cash may hold (`max_positions`, also a
/// sweep axis): far above any universe's symbol count, and low enough
/// that every slot (1/N of equity) stays a real position and the value
/// fits every column that stores it.
pub const MAX_POSITIONS_LIMIT: usize = 1_000_000;

/// [`MAX_POSITIONS_LIMIT`]'s rule as messages state it.
pub const MAX_POSITIONS_RANGE: &str =
    "a whole number from 1 to 1000000 (at most that many positions held at once)";

/// A number as a message shows it: in full when that is short, else in
/// scientific notation (`1e308`, not 309 digits).
pub fn number_text(v: f64) -> String {
    let a = v.abs();
    if v.is_finite() && a != 0.0 && !(1e-9..1e15).contains(&a) {
        format!("{v:e}")
    } else {
        v.to_string()
    }
}

impl Execution {
    /// The backtester's configuration (fractions, not basis points).
    pub fn exec_config(&self) -> ExecConfig {
        ExecConfig {
            mode: self.mode,
            fee: self.fee_bps / 10_000.0,
            slippage: self.slippage_bps / 10_000.0,
            stops: self.stops(),
        }
    }

    /// The stops as the backtester takes them (fractions, not percent).
    pub fn stops(&self) -> Stops {
        Stops {
            stop_loss: self.stop_loss.map(|p| p / 100.0),
            take_profit: self.take_profit.map(|p| p / 100.0),
            trailing_stop: self.trailing_stop.map(|p| p / 100.0),
        }
    }

    /// `true` when a stop, target or trailing stop is set (the run then
    /// reads each bar's high and low).
    pub fn has_stops(&self) -> bool {
        !self.stops().is_none()
    }

    /// Checks ranges: fees and slippage finite, >= 0 and below 100%;
    /// capital finite and > 0; stop_loss and trailing_stop in (0, 100)
    /// percent, take_profit finite and > 0 percent.
    pub fn validate(&self) -> Result<(), StrategyError> {
        let bad = |key: &'static str, value: f64, range: &'static str| StrategyError::Invalid {
            file: None,
            key,
            value: number_text(value),
            range,
        };
        if !(self.fee_bps.is_finite() && (0.0..10_000.0).contains(&self.fee_bps)) {
            return Err(bad("fee_bps", self.fee_bps, "0 <= fee_bps < 10000"));
        }
        if !(self.slippage_bps.is_finite() && (0.0..10_000.0).contains(&self.slippage_bps)) {
            return Err(bad(
                "slippage_bps",
                self.slippage_bps,
                "0 <= slippage_bps < 10000",
            ));
        }
        if !(self.capital.is_finite() && self.capital > 0.0) {
            return Err(bad("capital", self.capital, "finite and > 0"));
        }
        for (key, value, range) in [
            (
                "stop_loss",
                self.stop_loss,
                "0 < stop_loss < 100, percent of the entry fill price (--stop-loss 5 = 5%)",
            ),
            (
                "take_profit",
                self.take_profit,
                "take_profit > 0 and finite, percent of the entry fill price (--take-profit 10 = 10%)",
            ),
            (
                "trailing_stop",
                self.trailing_stop,
                "0 < trailing_stop < 100, percent from the best price since the entry (--trailing-stop 5 = 5%)",
            ),
        ] {
            let Some(v) = value else { continue };
            if !(v.is_finite() && v > 0.0 && (key == "take_profit" || v < 100.0)) {
                return Err(bad(key, v, range));
            }
        }
        if let Some(n) = self.max_positions {
            if !(1..=MAX_POSITIONS_LIMIT).contains(&n) {
                return Err(StrategyError::Invalid {
                    file: None,
                    key: "max_positions",
                    value: n.to_string(),
                    range: MAX_POSITIONS_RANGE,
                });
            }
        }
        if self.allocation == Allocation::EqualSplit {
            // Only the shared account has slots and resizes: refuse rather
            // than ignore them.
            if let Some(n) = self.max_positions {
                return Err(bad(
                    "max_positions",
                    n as f64,
                    "only with allocation = \"shared\" (--allocation shared)",
                ));
            }
            if self.rebalance != Rebalance::OnChange {
                return Err(StrategyError::Invalid {
                    file: None,
                    key: "rebalance",
                    value: self.rebalance.name().into(),
                    range: "on-change unless allocation = \"shared\" (--allocation shared)",
                });
            }
        }
        if self.rebalance != Rebalance::OnChange && self.has_stops() {
            // A stop exits a whole position; periodic resizes split it
            // into lots with their own entry prices.
            return Err(StrategyError::Invalid {
                file: None,
                key: "rebalance",
                value: self.rebalance.name().into(),
                range: "on-change when a stop is set (--stop-loss, --take-profit, --trailing-stop): drop the stop or --rebalance",
            });
        }
        Ok(())
    }
}

/// `[metrics]` of a strategy: how the statistics are annualised and the
/// rate Sharpe and Sortino are measured against (`--periods-per-year`,
/// `--risk-free`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// Bars per year for every curve (symbols, portfolio, benchmark);
    /// absent: inferred from each curve's calendar (METRICS.md,
    /// *Annualisation*).
    pub periods_per_year: Option<f64>,
    /// Annual risk-free rate as a fraction (0.02 = 2%), used by Sharpe and
    /// Sortino as quantstats uses `rf`.
    pub risk_free: f64,
}

impl MetricsSettings {
    /// The backtester's options for a curve in `calendar`.
    pub fn options(&self, calendar: Calendar) -> MetricsOptions {
        MetricsOptions {
            periods_per_year: self.periods_per_year,
            risk_free: self.risk_free,
            calendar,
        }
    }

    /// Checks ranges: periods per year finite and > 0; the risk-free rate
    /// finite and in (−1, 1).
    pub fn validate(&self) -> Result<(), StrategyError> {
        if let Some(p) = self.periods_per_year {
            if !(p.is_finite() && p > 0.0) {
                return Err(StrategyError::Invalid {
                    file: None,
                    key: "periods_per_year",
                    value: p.to_string(),
                    range: "finite and > 0, e.g. 252 for daily stock bars",
                });
            }
        }
        if !(self.risk_free.is_finite() && self.risk_free > -1.0 && self.risk_free < 1.0) {
            return Err(StrategyError::Invalid {
                file: None,
                key: "risk_free",
                value: number_text(self.risk_free),
                range: "an annual fraction in (-1, 1), e.g. 0.02 for 2%",
            });
        }
        Ok(())
    }
}

/// A whole strategy: ATC parameters, execution settings and how the
/// statistics are annualised.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Strategy {
    /// ATC parameters (spec names and units).
    pub atc: AtcParams,
    /// How the direction is traded.
    pub execution: Execution,
    /// How the statistics are annualised.
    pub metrics: MetricsSettings,
}

/// Errors reading or validating a strategy.
#[derive(Debug, thiserror::Error)]
pub enum StrategyError {
    /// The file could not be read.
    #[error("{}: cannot read strategy file: {source}", path.display())]
    Read {
        /// The strategy file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed or has an unknown key.
    #[error("{}: {message}", path.display())]
    Parse {
        /// The strategy file.
        path: PathBuf,
        /// The parser's message (it names the key and the line).
        message: String,
    },
    /// A value is out of range.
    #[error("{}invalid value {key} = {value}: valid range is {range}", file.as_ref().map(|f| format!("{}: ", f.display())).unwrap_or_default())]
    Invalid {
        /// The strategy file, if the value came from one.
        file: Option<PathBuf>,
        /// The key.
        key: &'static str,
        /// The value given.
        value: String,
        /// The valid range in words.
        range: &'static str,
    },
    /// An ATC parameter is out of range.
    #[error("{}: [atc] {source}", path.display())]
    Atc {
        /// The strategy file.
        path: PathBuf,
        /// The engine's validation error.
        source: EngineError,
    },
}

impl Strategy {
    /// Parses a strategy from TOML text; `path` names it in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<Strategy, StrategyError> {
        let mut s: Strategy = toml::from_str(text).map_err(|e| StrategyError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().replace('\n', "\n  "),
        })?;
        s.atc.normalize_zeros();
        s.atc.validate().map_err(|source| StrategyError::Atc {
            path: path.to_path_buf(),
            source,
        })?;
        s.execution
            .validate()
            .and_then(|()| s.metrics.validate())
            .map_err(|e| match e {
                StrategyError::Invalid {
                    key, value, range, ..
                } => StrategyError::Invalid {
                    file: Some(path.to_path_buf()),
                    key,
                    value,
                    range,
                },
                other => other,
            })?;
        Ok(s)
    }

    /// Reads and validates a strategy file.
    pub fn load(path: &Path) -> Result<Strategy, StrategyError> {
        let text = std::fs::read_to_string(path).map_err(|source| StrategyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Strategy::from_toml(&text, path)
    }

    /// The shipped default (`strategies/atc_default.toml`).
    pub fn shipped_default() -> Result<Strategy, StrategyError> {
        Strategy::from_toml(
            DEFAULT_STRATEGY_TOML,
            Path::new("strategies/atc_default.toml"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_default_equals_spec_defaults() {
        assert_eq!(Strategy::shipped_default().unwrap(), Strategy::default());
    }

    #[test]
    fn shipped_variants_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("strategies");
        let mut n = 0;
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml")
                && !p
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("sweep")
            {
                Strategy::load(&p).unwrap();
                n += 1;
            }
        }
        assert!(n >= 3);
    }

    #[test]
    fn unknown_key_names_key_and_file() {
        let err = Strategy::from_toml("[atc]\nlamda = 0.1\n", Path::new("s.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("s.toml") && err.contains("lamda"), "{err}");
        let err = Strategy::from_toml("[exec]\n", Path::new("s.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("exec"), "{err}");
    }

    #[test]
    fn metrics_table_parses_and_is_checked() {
        let s = Strategy::from_toml(
            "[metrics]\nperiods_per_year = 365\nrisk_free = 0.02\n",
            Path::new("s.toml"),
        )
        .unwrap();
        assert_eq!(s.metrics.periods_per_year, Some(365.0));
        assert_eq!(s.metrics.risk_free, 0.02);
        for (bad, key) in [
            ("risk_free = 2", "risk_free = 2"),
            ("periods_per_year = -1", "periods_per_year = -1"),
        ] {
            let err = Strategy::from_toml(&format!("[metrics]\n{bad}\n"), Path::new("s.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("s.toml") && err.contains(key), "{err}");
        }
    }

    /// `[execution]` stops are percent in the file and fractions in the
    /// backtester; unset, they are absent from the serialized strategy (so
    /// run.json and every input hash are those of before stops existed).
    #[test]
    fn stops_parse_as_percent_and_are_absent_when_unset() {
        let s = Strategy::from_toml(
            "[execution]\nstop_loss = 5\ntake_profit = 12.5\ntrailing_stop = 2\n",
            Path::new("s.toml"),
        )
        .unwrap();
        let stops = s.execution.exec_config().stops;
        assert_eq!(stops.stop_loss, Some(0.05));
        assert_eq!(stops.take_profit, Some(0.125));
        assert_eq!(stops.trailing_stop, Some(0.02));
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"stop_loss\":5.0"), "{json}");
        let plain = serde_json::to_string(&Strategy::default()).unwrap();
        assert!(
            !plain.contains("stop") && !plain.contains("take_profit"),
            "{plain}"
        );
        for bad in ["stop_loss = 100", "trailing_stop = 0", "take_profit = -3"] {
            let err = Strategy::from_toml(&format!("[execution]\n{bad}\n"), Path::new("s.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("s.toml") && err.contains(bad), "{err}");
            let flag = format!("--{}", bad.split(' ').next().unwrap().replace('_', "-"));
            assert!(err.contains(&flag), "{err}");
        }
    }

    /// Attack on issue 22: the flags took `--rebalance Weekly` and
    /// `--allocation SHARED`, a strategy file refused the same words. Both
    /// now read the choices in any letter case, and say what is valid.
    #[test]
    fn choices_in_strategy_files_take_any_letter_case_as_the_flags() {
        let s = Strategy::from_toml(
            "[execution]\nmode = \"Long-Short\"\nallocation = \"SHARED\"\nrebalance = \"Weekly\"\n",
            Path::new("s.toml"),
        )
        .unwrap();
        assert_eq!(s.execution.mode, Mode::LongShort);
        assert_eq!(s.execution.allocation, Allocation::Shared);
        assert_eq!(s.execution.rebalance, Rebalance::Weekly);
        let json = serde_json::to_string(&s.execution).unwrap();
        assert!(json.contains("\"rebalance\":\"weekly\""), "{json}");
        let err = Strategy::from_toml("[execution]\nrebalance = \"hourly\"\n", Path::new("s.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("s.toml") && err.contains("monthly"), "{err}");
    }

    #[test]
    fn out_of_range_names_key_and_file() {
        let err = Strategy::from_toml("[atc]\ndecay = 150\n", Path::new("s.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("s.toml") && err.contains("decay = 150"),
            "{err}"
        );
        let err = Strategy::from_toml("[execution]\ncapital = -1\n", Path::new("s.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("s.toml") && err.contains("capital = -1"),
            "{err}"
        );
    }

    /// Each registry row is a key of `[atc]`: a strategy file setting it
    /// to another value sets exactly that field; a misspelt key is an
    /// error naming it and the known keys.
    #[test]
    fn every_parameter_round_trips_through_strategy_toml() {
        use crate::engine::registry::PARAMS;
        use crate::engine::{ParamValue, Robustness};
        for s in PARAMS {
            let v = match s.default {
                ParamValue::Real(x) => ParamValue::Real(x + 0.25),
                ParamValue::Int(x) => ParamValue::Int(x + 3),
                ParamValue::Robustness(_) => ParamValue::Robustness(Robustness::Wide),
            };
            let value = match v {
                ParamValue::Robustness(r) => format!("\"{}\"", r.name().to_lowercase()),
                other => other.to_string(),
            };
            let text = format!("[atc]\n{} = {value}\n", s.name);
            let st = Strategy::from_toml(&text, Path::new("s.toml")).unwrap();
            let mut want = Strategy::default();
            s.set(&mut want.atc, v).unwrap();
            assert_eq!(st, want, "{}", s.name);
            // And back: the key written is the registry name.
            let written = toml::to_string(&st).unwrap();
            assert!(written.contains(&format!("\n{} = ", s.name)), "{written}");
        }
        let e = Strategy::from_toml("[atc]\nlamda = 1.0\n", Path::new("s.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("lamda") && e.contains("lambda"), "{e}");
    }
}
