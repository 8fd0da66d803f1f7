//! Scale out: split a `run` or `sweep` over N independent processes
//! (`--shard i/N`) and put the pieces back together (`atc-bt merge`).
//!
//! Per-symbol indicators, equities and trades do not depend on other
//! symbols, so sharding by symbol is exact. A symbol belongs to shard
//! `blake3(series name) mod N` ([`shard_of`]): no coordinator, the same
//! answer on every machine and every retry. Everything that couples symbols
//! (the capital split, the portfolio sum, the rankings) is done either from
//! the whole selection (the capital split: every shard opens the data index
//! and counts the symbols of the whole selection with data in the window) or
//! in [`merge`], in the single-machine symbol order, so the merged
//! `metrics.json` and `results.parquet` are bit-identical to one machine's.
//!
//! A shard writes a self-describing part directory ([`part`]):
//! `part-<i>-of-<N>/` with `part.json` (inputs hash, resolved parameters,
//! the capital split), three Parquet tables of per-symbol results and a
//! `_SUCCESS` marker written last; the directory is built under a temporary
//! name and renamed into place, so a retried shard replaces its own part
//! atomically and touches nothing else.

pub mod merge;
pub mod part;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::data::Dataset;

/// Environment variables read by `--shard auto/N`, in order: Kubernetes
/// Indexed Jobs, then AWS Batch array jobs.
pub const INDEX_ENV_VARS: [&str; 2] = ["JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX"];

/// Errors of `--shard`.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// Not of the form `i/N`.
    #[error("--shard {text:?}: expected INDEX/COUNT such as 0/4, or auto/COUNT (index from ${}); {why}", INDEX_ENV_VARS.join(" or $"))]
    Syntax {
        /// What was given.
        text: String,
        /// What is wrong with it.
        why: String,
    },
    /// The index is not below the count, or the count is 0.
    #[error("--shard {text:?}: the index must be in 0..{count} (0 to {last}) and the count at least 1", last = count.saturating_sub(1))]
    OutOfRange {
        /// What was given.
        text: String,
        /// The count.
        count: u32,
    },
    /// `auto` without an index in the environment.
    #[error("--shard {text:?}: auto takes the index from ${}, and none is set; give the index (e.g. --shard 0/{count}) or run it as a Kubernetes Indexed Job / AWS Batch array job", INDEX_ENV_VARS.join(" or $"))]
    NoIndex {
        /// What was given.
        text: String,
        /// The count.
        count: u32,
    },
    /// `auto` with an index variable that is not a number in range.
    #[error("--shard {text:?}: ${var}={value:?} is not an index in 0..{count} (0 to {last})", last = count.saturating_sub(1))]
    BadIndex {
        /// What was given.
        text: String,
        /// The variable read.
        var: &'static str,
        /// Its value.
        value: String,
        /// The count.
        count: u32,
    },
}

/// One shard of N: `index` in `0..count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShardSpec {
    /// This shard, `0..count`.
    pub index: u32,
    /// Number of shards, at least 1.
    pub count: u32,
}

impl fmt::Display for ShardSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl ShardSpec {
    /// Parses `i/N` or `auto/N`; `auto` reads the index from the first of
    /// [`INDEX_ENV_VARS`] that `env` returns.
    pub fn parse(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ShardSpec, ShardError> {
        let syntax = |why: &str| ShardError::Syntax {
            text: text.to_string(),
            why: why.to_string(),
        };
        let (i, n) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| syntax("no '/'"))?;
        let count: u32 = n
            .trim()
            .parse()
            .map_err(|_| syntax(&format!("the count {n:?} is not a whole number")))?;
        if count == 0 {
            return Err(ShardError::OutOfRange {
                text: text.to_string(),
                count,
            });
        }
        let index = if i.trim() == "auto" {
            let (var, value) = INDEX_ENV_VARS
                .iter()
                .find_map(|v| env(v).map(|x| (*v, x)))
                .ok_or(ShardError::NoIndex {
                    text: text.to_string(),
                    count,
                })?;
            match value.trim().parse::<u32>() {
                Ok(k) if k < count => k,
                _ => {
                    return Err(ShardError::BadIndex {
                        text: text.to_string(),
                        var,
                        value,
                        count,
                    })
                }
            }
        } else {
            i.trim()
                .parse::<u32>()
                .map_err(|_| syntax(&format!("the index {i:?} is not a whole number or auto")))?
        };
        if index >= count {
            return Err(ShardError::OutOfRange {
                text: text.to_string(),
                count,
            });
        }
        Ok(ShardSpec { index, count })
    }

    /// Parses with the process environment.
    pub fn from_arg(text: &str) -> Result<ShardSpec, ShardError> {
        ShardSpec::parse(text, |v| std::env::var(v).ok())
    }

    /// Whether this shard processes the series named `name`.
    pub fn owns(&self, name: &str) -> bool {
        shard_of(name, self.count) == self.index
    }

    /// The series of `series` (indices into [`Dataset::series`]) this shard
    /// processes, in their order.
    pub fn filter(&self, data: &Dataset, series: &[usize]) -> Vec<usize> {
        series
            .iter()
            .copied()
            .filter(|&i| self.owns(&data.series()[i].name))
            .collect()
    }

    /// The part directory's name: `part-<i>-of-<N>`.
    pub fn part_name(&self) -> String {
        format!("part-{}-of-{}", self.index, self.count)
    }

    /// The result cache of this shard: `<cache>/shard-<i>` (sled allows one
    /// process per database, so shards never share one).
    pub fn cache_dir(&self, cache: &Path) -> PathBuf {
        cache.join(format!("shard-{}", self.index))
    }
}

/// The shard of a series: the first 8 bytes of `blake3(name)` as a
/// little-endian integer, modulo `n` (`n` = 0 is treated as 1).
pub fn shard_of(name: &str, n: u32) -> u32 {
    let h = blake3::hash(name.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    (u64::from_le_bytes(b) % u64::from(n.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn parses_and_rejects() {
        assert_eq!(
            ShardSpec::parse("2/3", no_env).unwrap(),
            ShardSpec { index: 2, count: 3 }
        );
        for bad in ["3/3", "x/0", "1/0", "a/2", "2", "-1/2", "0/x"] {
            let e = ShardSpec::parse(bad, no_env).unwrap_err().to_string();
            assert!(e.contains("--shard"), "{bad}: {e}");
        }
        assert!(ShardSpec::parse("3/3", no_env)
            .unwrap_err()
            .to_string()
            .contains("0 to 2"));
        let e = ShardSpec::parse("auto/2", no_env).unwrap_err().to_string();
        assert!(e.contains("JOB_COMPLETION_INDEX"), "{e}");
        let k8s = |v: &str| (v == "JOB_COMPLETION_INDEX").then(|| "1".to_string());
        assert_eq!(
            ShardSpec::parse("auto/2", k8s).unwrap(),
            ShardSpec { index: 1, count: 2 }
        );
        let aws = |v: &str| (v == "AWS_BATCH_JOB_ARRAY_INDEX").then(|| "5".to_string());
        assert!(ShardSpec::parse("auto/2", aws).is_err());
    }

    #[test]
    fn shard_of_is_stable_and_spreads() {
        assert_eq!(shard_of("AAPL", 1), 0);
        let a = shard_of("AAPL", 7);
        assert_eq!(a, shard_of("AAPL", 7));
        let mut counts = [0usize; 4];
        for k in 0..4000 {
            counts[shard_of(&format!("S{k:05}"), 4) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 850), "{counts:?}");
    }
}
