//! A warm rerun of `atc-bt run`, restored without opening the data store
//! or the cache's database ([`crate::cache::fast`]): the invocation key
//! names the data by its source files' stamps, a memo maps it to the run
//! entry, and the entry's own manifest vouches for every file.
//!
//! Anything short of a complete restore (no memo, a file missing or
//! changed, a past TTL, no cached report for these report flags) leaves
//! nothing behind and hands over to the normal path, which opens both
//! stores and decides with their authority.

use std::time::Instant;

use anyhow::Result;

use super::run::{default_out, read_restored, report_run, restore_report_parts, RunArgs};
use crate::cache::{CacheConfig, CacheStats, FastCache, Key, Kind};
use crate::report::MemorySampler;
use crate::run::output::{partial_dir, RUN_FORMAT_VERSION};
use crate::run::Strategy;

/// What identifies one `atc-bt run` command's result before anything is
/// opened.
pub(super) struct Invocation {
    /// blake3 over the program and layout versions, the resolved strategy,
    /// the selection and window flags, `--strict`, the store directory and
    /// each source file's path, size and modification time.
    pub key: Key,
    cfg: CacheConfig,
    /// The store the data names (see [`try_restore`]).
    store_dir: std::path::PathBuf,
}

impl Invocation {
    /// `None` with `--no-cache`, or when the flags or the data cannot be
    /// read (the normal path then reports why).
    pub(super) fn new(args: &RunArgs, strategy: &Strategy) -> Option<Invocation> {
        if args.cache.no_cache {
            return None;
        }
        let (store_dir, sources) =
            crate::data::store::source_stamp(&args.data.options(false)).ok()?;
        let sel = &args.selection;
        let (selection, from, to) = (
            sel.selection().ok()?,
            sel.from_us().ok()?,
            sel.to_us().ok()?,
        );
        let mut h = blake3::Hasher::new();
        let mut part = |b: &[u8]| {
            h.update(&(b.len() as u64).to_le_bytes());
            h.update(b);
        };
        part(b"atc-bt run invocation");
        part(env!("CARGO_PKG_VERSION").as_bytes());
        part(&RUN_FORMAT_VERSION.to_le_bytes());
        part(serde_json::to_string(strategy).ok()?.as_bytes());
        part(
            format!(
                "{selection:?}|{from:?}|{to:?}|{:?}|{}|{}",
                sel.warmup_bars,
                args.data.strict,
                args.outputs.names()
            )
            .as_bytes(),
        );
        part(store_dir.display().to_string().as_bytes());
        for s in &sources {
            part(format!("{}|{}|{}", s.path, s.size, s.mtime_ns).as_bytes());
        }
        Some(Invocation {
            store_dir,
            key: Key(*h.finalize().as_bytes()),
            // The same directory the normal path uses (nothing created).
            cfg: args
                .cache
                .config(&crate::locate::data_base(&args.data.data)),
        })
    }
}

/// Restores the run `inv` names, if the memo and every file allow, and
/// completes it (summary, `memory.parquet`, `run.json`, report). Returns
/// the sampler back when it did not, for the normal path.
pub(super) fn try_restore(
    args: &RunArgs,
    inv: &Invocation,
    sampler: MemorySampler,
    t0: Instant,
) -> Result<Option<MemorySampler>> {
    let Some(fc) = FastCache::new(&inv.cfg) else {
        return Ok(Some(sampler));
    };
    // The memo's note says the store is unchanged: only true while it is
    // there (a --force or a user may have deleted it; the normal path
    // rebuilds it).
    if !inv.store_dir.join("manifest.json").is_file() {
        return Ok(Some(sampler));
    }
    let Some((memo, run)) = fc
        .memo(&inv.key)
        .and_then(|m| Key::from_hex(&m.run).map(|k| (m, k)))
    else {
        return Ok(Some(sampler));
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_out(&memo.inputs_hash));
    let tmp = partial_dir(&out, args.force)?;
    let t_load = t0.elapsed();
    let t1 = Instant::now();
    let report = (!args.report.no_report).then(|| args.report.cache_key(&run));
    // The two entries are independent: restore them side by side.
    let (files, parts) = rayon::join(
        || fc.restore(Kind::Run, &run, &tmp),
        || match &report {
            Some(rk) => {
                restore_report_parts(&tmp, |dest| fc.restore(Kind::Report, rk, dest)).map(Some)
            }
            None => Some(None),
        },
    );
    let Some(parts) = files.and(parts) else {
        let _ = std::fs::remove_dir_all(&tmp);
        return Ok(Some(sampler));
    };
    let t_restore = t1.elapsed();
    let mut hits = vec![(Kind::Run, run)];
    hits.extend(report.map(|rk| (Kind::Report, rk)));
    let mut stats = CacheStats {
        enabled: true,
        ..Default::default()
    };
    for (kind, _) in &hits {
        stats.this_run[kind.index()].hits_l2 += 1;
    }
    let threads = args
        .threads
        .filter(|&n| n > 0)
        .unwrap_or_else(rayon::current_num_threads);
    let Ok(done) = read_restored(
        args,
        None,
        stats,
        (&tmp, &out),
        threads,
        (t_load, t_restore),
    ) else {
        let _ = std::fs::remove_dir_all(&tmp);
        return Ok(Some(sampler));
    };
    for line in &memo.notes {
        errln!("{line}");
    }
    let drawn = done.commit(args, sampler, parts.is_some())?;
    fc.record_hits(&hits);
    report_run(args, &out, parts, None, Some(drawn))?;
    Ok(None)
}
