//! `atc-bt cache stats|gc|clear|verify`, and [`CacheFlags`], the cache
//! options every computing command flattens.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use atc_bt::cache::{self, Cache, CacheConfig, CacheStats, Kind, KindStats};

/// Cache options shared by every computing command (`--no-cache`, …).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Cache")]
pub struct CacheFlags {
    /// Cache directory [default: $ATC_CACHE_DIR, else <data dir>/.atc-cache
    /// if the data directory is writable, else ~/.cache/atc-bt/cache; the
    /// same rule for `run`, `sweep` and `cache`, see `atc-bt cache --help`]
    #[arg(long, value_name = "DIR", global = true)]
    pub cache_dir: Option<PathBuf>,
    /// Memory for the in-process cache (L1), e.g. 256MiB, 1GiB
    #[arg(long, value_name = "BYTES", default_value = "256MiB", value_parser = parse_bytes, global = true, allow_negative_numbers = true)]
    pub cache_mem: u64,
    /// Disk budget of the on-disk cache (L2), measured on disk, e.g. 2GiB
    #[arg(long, value_name = "BYTES", default_value = "2GiB", value_parser = parse_bytes, global = true, allow_negative_numbers = true)]
    pub cache_size: u64,
    /// Entries older than this are never used: 30d, 12h, 15m, 10s, 500ms
    #[arg(long, value_name = "DURATION", default_value = "30d", value_parser = parse_duration, global = true)]
    pub cache_ttl: Duration,
    /// Compute everything, read and write no cache
    #[arg(long, global = true)]
    pub no_cache: bool,
}

impl CacheFlags {
    /// The job's cache settings for these flags.
    pub fn settings(&self) -> atc_bt::job::CacheSettings {
        atc_bt::job::CacheSettings {
            dir: self.cache_dir.clone(),
            mem_bytes: self.cache_mem,
            disk_bytes: self.cache_size,
            ttl: self.cache_ttl,
            enabled: !self.no_cache,
        }
    }

    /// The cache configuration for data whose data directory is `base`
    /// (see [`atc_bt::locate`]: `--cache-dir`, else `$ATC_CACHE_DIR`, else
    /// `<base>/.atc-cache` when writable, else the per-user cache
    /// directory). Nothing is created.
    pub fn config(&self, base: &Path) -> CacheConfig {
        CacheConfig {
            dir: atc_bt::locate::cache_dir(base, self.cache_dir.as_deref()),
            mem_bytes: self.cache_mem,
            disk_bytes: self.cache_size,
            ttl: self.cache_ttl,
            enabled: !self.no_cache,
        }
    }
}

/// Parses a byte size: `123`, `64KiB`, `256MiB`, `2GiB`, `1.5G`, `10MB`
/// (KB/MB/GB are decimal, K/M/G and KiB/MiB/GiB binary).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size; use e.g. 512MiB, 2GiB or 1000000"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tib" => 1024f64.powi(4),
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit; use B, KiB, MiB, GiB, TiB (or KB, MB, GB)"
            ))
        }
    };
    let v = n * mult;
    if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(v as u64)
}

/// Parses a duration: a number followed by `ms`, `s`, `m`, `h`, `d` or
/// `w` (`30d`, `12h`, `10s`); parts may be chained (`1h30m`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let bad = || format!("{s:?} is not a duration; use e.g. 30d, 12h, 15m, 10s or 500ms");
    if t.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (num, tail) = rest.split_at(split);
        let n: f64 = num.parse().map_err(|_| bad())?;
        let ulen = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(ulen);
        let secs = match unit.trim() {
            "ms" => 1e-3,
            "s" | "sec" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            "w" => 7.0 * 86400.0,
            _ => return Err(bad()),
        };
        total += n * secs;
        rest = next;
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

/// Arguments of `atc-bt cache`.
#[derive(Debug, Args)]
#[command(after_long_help = CACHE_HELP)]
pub struct CacheArgs {
    /// What to do with the cache.
    #[command(subcommand)]
    pub action: CacheAction,
    /// The data whose cache this is (as given to `run --data`): the cache
    /// is found by the same rule as `run` and `sweep` find it
    #[arg(long, value_name = "PATH", default_value = "data", global = true)]
    pub data: PathBuf,
    #[command(flatten)]
    pub flags: CacheFlags,
}

const CACHE_HELP: &str = "\
Where the cache is (the same rule for every command, given the same flags):
  --cache-dir DIR, else $ATC_CACHE_DIR, else <data dir>/.atc-cache when the
  data directory is writable, else $XDG_CACHE_HOME/atc-bt/cache (or
  ~/.cache/atc-bt/cache). <data dir> is --data made canonical: `data`,
  `./data`, its absolute path and 'data/*.parquet' are one directory.
  Shards of `run --shard` keep theirs in <cache>/shard-<i>.";

/// The `cache` subcommands.
#[derive(Debug, Subcommand)]
pub enum CacheAction {
    /// Entries and bytes per tier and kind, hits/misses and hit rate of the
    /// last run and in total, the oldest entry
    Stats,
    /// Remove expired entries, orphaned run directories and evict down to
    /// --cache-size
    Gc,
    /// Delete the on-disk cache
    Clear,
    /// Check every stored value's checksum and re-hash the files of cached
    /// runs; remove and list the bad ones
    Verify,
}

/// Runs `atc-bt cache …`.
pub fn run(args: &CacheArgs) -> Result<()> {
    let cfg = args.flags.config(&atc_bt::locate::data_base(&args.data));
    let absent = !cfg.dir.join("db").exists();
    match &args.action {
        CacheAction::Clear => {
            // Never opens the database: a damaged one is cleared too.
            let freed = cache::clear(&cfg.dir)?;
            outln!("cleared {} ({})", cfg.dir.display(), human_bytes(freed));
            Ok(())
        }
        CacheAction::Stats | CacheAction::Gc | CacheAction::Verify if absent => {
            // Nothing to read: nothing is created either.
            outln!("cache: {}", cfg.dir.display());
            outln!("  empty: nothing has been cached here yet");
            Ok(())
        }
        CacheAction::Stats => {
            let cache = open_for_maintenance(&cfg)?;
            outln!("cache: {}", cfg.dir.display());
            print_stats(&cache.stats());
            Ok(())
        }
        CacheAction::Gc => {
            let cache = open_for_maintenance(&cfg)?;
            let r = cache.gc().context("cache gc failed")?;
            for k in &r.corrupt {
                outln!("run entry {k} had lost its files: removed");
            }
            outln!(
                "{}: checked {} entries: removed {} expired, evicted {}, {} orphaned or stale temporary entries; on disk {} -> {}",
                cfg.dir.display(),
                r.checked,
                r.expired,
                r.evicted,
                r.orphans,
                human_bytes(r.disk_before),
                human_bytes(r.disk_after)
            );
            Ok(())
        }
        CacheAction::Verify => {
            let cache = open_for_maintenance(&cfg)?;
            let moved = cache.warnings().iter().any(|w| w.contains("moved it to"));
            let r = cache.verify().context("cache verify failed")?;
            for k in &r.corrupt {
                outln!("bad value {k}: removed");
            }
            if moved {
                outln!(
                    "{}: the database was damaged and has been moved aside (see the warning); the cache is empty and usable",
                    cfg.dir.display()
                );
            }
            outln!(
                "{}: checked {} values: {} bad",
                cfg.dir.display(),
                r.checked,
                r.corrupt.len()
            );
            print_new_warnings(&cache);
            Ok(())
        }
    }
}

/// Prints the cache's warnings not printed yet (one line each).
pub fn print_new_warnings(cache: &Cache) {
    for w in cache.take_warnings() {
        errln!("{w}");
    }
}

fn open_for_maintenance(cfg: &CacheConfig) -> Result<Cache> {
    let cache = Cache::open(&CacheConfig {
        enabled: true,
        ..cfg.clone()
    });
    if !cache.has_l2() {
        bail!(
            "cannot open the cache in {}: {}",
            cfg.dir.display(),
            cache.warnings().join("; ")
        );
    }
    print_new_warnings(&cache);
    Ok(cache)
}

/// `1.5 MiB`-style sizes.
fn human_bytes(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

fn print_stats(s: &CacheStats) {
    let when = |ms: u64| {
        let age = cache::now_ms().saturating_sub(ms) / 1000;
        format!("{}d {}h ago", age / 86400, age % 86400 / 3600)
    };
    if let Some(l2) = &s.l2 {
        outln!(
            "on disk (L2): {}  {} measured",
            l2.path.display(),
            human_bytes(l2.disk_bytes)
        );
        for k in Kind::ALL {
            let u = l2.usage[k.index()];
            outln!(
                "  {:<8} {:>8} entries {:>12}",
                k.name(),
                u.entries,
                human_bytes(u.bytes)
            );
        }
        match l2.oldest_ms {
            Some(ms) => outln!("  oldest entry written {}", when(ms)),
            None => outln!("  empty"),
        }
    }
    outln!("in memory (L1) at the end of the last run:");
    // Run entries are files on disk only; an always-empty L1 line would
    // suggest otherwise.
    for k in Kind::ALL.into_iter().filter(|&k| !k.has_files()) {
        let u = s.last_run_l1[k.index()];
        outln!(
            "  {:<8} {:>8} entries {:>12}",
            k.name(),
            u.entries,
            human_bytes(u.bytes)
        );
    }
    for (title, per) in [("last run", &s.last_run), ("total", &s.total)] {
        outln!("{title}:");
        let mut all = KindStats::default();
        for k in Kind::ALL {
            all = all.plus(per[k.index()]);
            outln!("  {}", per[k.index()].line(k));
        }
        outln!(
            "  all: hit-rate {}",
            all.hit_rate()
                .map_or("-".to_string(), |r| format!("{:.1}%", r * 100.0))
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes_and_durations() {
        assert_eq!(parse_bytes("256MiB"), Ok(256 << 20));
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(parse_bytes("10MB"), Ok(10_000_000));
        assert_eq!(parse_bytes("123"), Ok(123));
        assert!(parse_bytes("12 parsecs").is_err());
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86400)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("10").is_err());
    }
}
