//! ATC parameters: names, units, defaults and valid ranges exactly as in the
//! parameter table of `spec/ATC.md` (sec. 2).
//!
//! `lambda` and `decay` are kept in Pine *input* units (the numbers a user
//! types in the Pine settings dialog); the engine scales them itself
//! (`lambda / 1000`, `decay / 100`) so that a TOML file, a CLI flag and the
//! Pine dialog all mean the same number.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The six moving-average families, in the spec's order (EMA, HMA, WMA,
/// DEMA, LSMA, KAMA). The order is part of the numbers: layer 2 and the
/// average signal sum families in exactly this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Family {
    /// Exponential moving average (`ta.ema`).
    Ema,
    /// The Pine script's "HMA" branch, which calls `ta.sma` (a simple moving
    /// average, not a Hull MA). The name is kept because it is Pine's.
    Hma,
    /// Linearly weighted moving average (`ta.wma`).
    Wma,
    /// Double EMA (`ta.dema`).
    Dema,
    /// Least-squares moving average (`ta.linreg(x, L, 0)`).
    Lsma,
    /// The script's own Kaufman adaptive MA (fast 0.666, slow 0.064).
    Kama,
}

impl Family {
    /// All families in summation order.
    pub const ALL: [Family; 6] = [
        Family::Ema,
        Family::Hma,
        Family::Wma,
        Family::Dema,
        Family::Lsma,
        Family::Kama,
    ];

    /// The upper-case name used in column names (`ma.EMA.0`, `L1.KAMA`).
    pub fn name(self) -> &'static str {
        match self {
            Family::Ema => "EMA",
            Family::Hma => "HMA",
            Family::Wma => "WMA",
            Family::Dema => "DEMA",
            Family::Lsma => "LSMA",
            Family::Kama => "KAMA",
        }
    }

    /// Position of the family in [`Family::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How far the nine lengths of a family spread around its base length
/// (spec sec. 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Robustness {
    /// Offsets (1, 2, 3, 4).
    Narrow,
    /// Offsets (1, 2, 4, 6) — Pine's default.
    #[default]
    Medium,
    /// Offsets (1, 3, 5, 7).
    Wide,
}

impl Robustness {
    /// The four offsets `(o1, o2, o3, o4)`.
    pub fn offsets(self) -> [usize; 4] {
        match self {
            Robustness::Narrow => [1, 2, 3, 4],
            Robustness::Medium => [1, 2, 4, 6],
            Robustness::Wide => [1, 3, 5, 7],
        }
    }

    /// The spec's spelling (`Narrow`, `Medium`, `Wide`).
    pub fn name(self) -> &'static str {
        match self {
            Robustness::Narrow => "Narrow",
            Robustness::Medium => "Medium",
            Robustness::Wide => "Wide",
        }
    }
}

impl fmt::Display for Robustness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Every number that changes the ATC output. Field names are the spec's
/// names and are used unchanged as TOML keys and (with `_` written `-`) as
/// CLI flags; the registry ([`super::registry::PARAMS`]) has one row per
/// field (unit, range, default, help), which every surface reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AtcParams {
    /// Growth factor in Pine input units; the engine uses `lambda / 1000`.
    pub lambda: f64,
    /// Equity decay in percent per bar; the engine uses `decay / 100`.
    pub decay: f64,
    /// Bars before the first active equity bar.
    pub cutout: usize,
    /// Spread of the nine lengths of each family.
    #[serde(with = "robustness_serde")]
    pub robustness: Robustness,
    /// Base length of the EMA family.
    pub ema_len: usize,
    /// Base length of the HMA (SMA) family.
    pub hma_len: usize,
    /// Base length of the WMA family.
    pub wma_len: usize,
    /// Base length of the DEMA family.
    pub dema_len: usize,
    /// Base length of the LSMA family.
    pub lsma_len: usize,
    /// Base length of the KAMA family.
    pub kama_len: usize,
    /// The average signal crossing above this sets direction +1.
    pub long_threshold: f64,
    /// The average signal crossing below this sets direction -1.
    pub short_threshold: f64,
    /// Starting equity of every layer-1 equity curve.
    pub starting_equity: f64,
    /// Layer-2 starting equity of the EMA family.
    pub ema_w: f64,
    /// Layer-2 starting equity of the HMA family.
    pub hma_w: f64,
    /// Layer-2 starting equity of the WMA family.
    pub wma_w: f64,
    /// Layer-2 starting equity of the DEMA family.
    pub dema_w: f64,
    /// Layer-2 starting equity of the LSMA family.
    pub lsma_w: f64,
    /// Layer-2 starting equity of the KAMA family.
    pub kama_w: f64,
}

impl Default for AtcParams {
    fn default() -> Self {
        AtcParams {
            lambda: 0.02,
            decay: 0.03,
            cutout: 0,
            robustness: Robustness::Medium,
            ema_len: 28,
            hma_len: 28,
            wma_len: 28,
            dema_len: 28,
            lsma_len: 28,
            kama_len: 28,
            long_threshold: 0.1,
            short_threshold: -0.1,
            starting_equity: 1.0,
            ema_w: 1.0,
            hma_w: 1.0,
            wma_w: 1.0,
            dema_w: 1.0,
            lsma_w: 1.0,
            kama_w: 1.0,
        }
    }
}

/// Serde for [`Robustness`] accepting any letter case, writing the spec's
/// spelling.
mod robustness_serde {
    use super::Robustness;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(r: &Robustness, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(r.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Robustness, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl AtcParams {
    /// Base length of one family.
    pub fn base_len(&self, family: Family) -> usize {
        match family {
            Family::Ema => self.ema_len,
            Family::Hma => self.hma_len,
            Family::Wma => self.wma_len,
            Family::Dema => self.dema_len,
            Family::Lsma => self.lsma_len,
            Family::Kama => self.kama_len,
        }
    }

    /// Layer-2 starting equity (Pine "Weight") of one family.
    pub fn weight(&self, family: Family) -> f64 {
        match family {
            Family::Ema => self.ema_w,
            Family::Hma => self.hma_w,
            Family::Wma => self.wma_w,
            Family::Dema => self.dema_w,
            Family::Lsma => self.lsma_w,
            Family::Kama => self.kama_w,
        }
    }

    /// The nine derived lengths of a family in spec order
    /// `B, B+o1, B+o2, B+o3, B+o4, B-o1, B-o2, B-o3, B-o4`.
    ///
    /// Returns `None` for a length below 2 (or one that would underflow);
    /// [`AtcParams::validate`] turns that into a named error.
    pub fn lengths(&self, family: Family) -> Option<[usize; 9]> {
        let b = self.base_len(family);
        let [o1, o2, o3, o4] = self.robustness.offsets();
        let lens = [
            b,
            b.checked_add(o1)?,
            b.checked_add(o2)?,
            b.checked_add(o3)?,
            b.checked_add(o4)?,
            b.checked_sub(o1)?,
            b.checked_sub(o2)?,
            b.checked_sub(o3)?,
            b.checked_sub(o4)?,
        ];
        lens.iter().all(|&l| l >= 2).then_some(lens)
    }

    /// `La = lambda / 1000`, computed exactly as the spec says.
    pub fn la(&self) -> f64 {
        self.lambda / 1000.0
    }

    /// `d = 1 - decay / 100`, the per-bar equity decay multiplier.
    pub fn decay_multiplier(&self) -> f64 {
        1.0 - self.decay / 100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_medium_lengths_match_spec() {
        let p = AtcParams::default();
        assert_eq!(
            p.lengths(Family::Ema),
            Some([28, 29, 30, 32, 34, 27, 26, 24, 22])
        );
    }

    #[test]
    fn wide_min_length_rejects_8_accepts_9() {
        let mut p = AtcParams {
            robustness: Robustness::Wide,
            kama_len: 8,
            ..AtcParams::default()
        };
        let err = p.validate().unwrap_err().to_string();
        assert!(
            err.contains("kama_len") && err.contains('8') && err.contains("9"),
            "{err}"
        );
        p.kama_len = 9;
        p.validate().unwrap();
    }

    #[test]
    fn range_errors_name_parameter_value_and_range() {
        let cases: Vec<(AtcParams, &str)> = vec![
            (
                AtcParams {
                    lambda: -0.1,
                    ..Default::default()
                },
                "lambda",
            ),
            (
                AtcParams {
                    decay: 100.0,
                    ..Default::default()
                },
                "decay",
            ),
            (
                AtcParams {
                    decay: -1.0,
                    ..Default::default()
                },
                "decay",
            ),
            (
                AtcParams {
                    long_threshold: f64::NAN,
                    ..Default::default()
                },
                "long_threshold",
            ),
            (
                AtcParams {
                    short_threshold: f64::INFINITY,
                    ..Default::default()
                },
                "short_threshold",
            ),
            (
                AtcParams {
                    starting_equity: 0.0,
                    ..Default::default()
                },
                "starting_equity",
            ),
            (
                AtcParams {
                    hma_w: f64::NAN,
                    ..Default::default()
                },
                "hma_w",
            ),
        ];
        for (p, name) in cases {
            let err = p.validate().unwrap_err().to_string();
            assert!(err.contains(name), "{err} should name {name}");
            assert!(err.contains("valid"), "{err} should give the valid range");
        }
    }

    #[test]
    fn robustness_parses_any_case() {
        assert_eq!("WIDE".parse::<Robustness>().unwrap(), Robustness::Wide);
        assert_eq!("narrow".parse::<Robustness>().unwrap(), Robustness::Narrow);
        assert!("tight".parse::<Robustness>().is_err());
    }

    #[test]
    fn toml_round_trip_and_unknown_key() {
        let p = AtcParams {
            robustness: Robustness::Wide,
            lambda: 0.1,
            ..Default::default()
        };
        let text = toml::to_string(&p).unwrap();
        let back: AtcParams = toml::from_str(&text).unwrap();
        assert_eq!(back, p);
        let err = toml::from_str::<AtcParams>("lamda = 0.1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("lamda"), "{err}");
    }
}
