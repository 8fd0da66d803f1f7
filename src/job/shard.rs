//! The shard side of a sharded run or sweep: each shard processes the
//! symbols it owns ([`ShardSpec::owns`]) with the capital split of the
//! whole selection, and writes a part (`part-I-of-N/`, header
//! `part.json` = [`PartHeader`]) for [`super::merge`].
//!
//! A part header's `params` is what every part of one merge must agree on
//! (`params.params`: the resolved strategy, or a sweep's base; the grid,
//! window, split, ranking and samples); its `context` is what the merged
//! manifest records (`data_path`, `sources`, `selection`, `strategy_file`,
//! timings) and is not compared.

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use super::{Progress, Result};
use crate::backtest::book::Allocation;
use crate::cache::Cache;
use crate::data::SignalsFile;
use crate::data::{Dataset, SourceInfo};
use crate::run::shared::{check_series, signals_of, skip_or_fail, DataBars};
use crate::run::{
    prepare, run_with_signals, ActiveSeries, RunError, RunPlan, Skipped, Strategy, RUN_CHUNK,
};
use crate::shard::part::{
    PartBookSeries, PartHeader, PartKind, PartSkipped, PartWriter, PART_FORMAT_VERSION,
};
use crate::shard::ShardSpec;
use crate::sweep::{sweep_with, Grid, Sample};

/// A part written by a shard.
#[derive(Debug, Clone)]
pub struct PartDone {
    /// The part directory.
    pub dir: PathBuf,
    /// The shard.
    pub spec: ShardSpec,
    /// Symbols this shard processed.
    pub symbols: usize,
    /// Symbols in the whole selection.
    pub selection: usize,
    /// Combinations (a sweep's part; 0 for a run's).
    pub combinations: u64,
}

/// `params` of a part header: what all parts of one merge share.
#[derive(Serialize)]
struct PartParams<'a> {
    params: &'a Strategy,
    #[serde(skip_serializing_if = "Option::is_none")]
    grid: Option<&'a Grid>,
    from_us: Option<i64>,
    to_us: Option<i64>,
    warmup_bars: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    split_us: Option<Option<i64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rank_by: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    samples: Option<&'a [Sample]>,
}

/// `selection[*]` of a part header's context.
#[derive(Serialize)]
struct Selected<'a> {
    symbol: &'a str,
    close_hash: &'a str,
}

/// `context` of a part header: what the merged manifest records.
#[derive(Serialize)]
struct PartContext<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    strategy_file: Option<Option<String>>,
    data_path: String,
    sources: &'a [SourceInfo],
    selection: Vec<Selected<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    combo_bars: Option<u64>,
    compute_ms: f64,
}

fn parts_dir(out: Option<&PathBuf>, inputs_hash: &str) -> PathBuf {
    out.cloned().unwrap_or_else(|| {
        PathBuf::from("reports/shards").join(&inputs_hash[..inputs_hash.len().min(12)])
    })
}

fn selection<'a>(data: &'a Dataset, plan: &RunPlan) -> Vec<Selected<'a>> {
    plan.series
        .iter()
        .map(|&i| {
            let s = &data.series()[i];
            Selected {
                symbol: &s.name,
                close_hash: &s.close_hash,
            }
        })
        .collect()
}

fn owned_skipped(
    spec: ShardSpec,
    skipped: &[Skipped],
    pos_of: &dyn Fn(&str) -> u32,
) -> Vec<PartSkipped> {
    skipped
        .iter()
        .filter(|s| spec.owns(&s.symbol))
        .map(|s| PartSkipped {
            pos: pos_of(&s.symbol),
            symbol: s.symbol.clone(),
            reason: s.reason.clone(),
        })
        .collect()
}

fn names(data: &Dataset, plan: &RunPlan) -> Vec<String> {
    plan.series
        .iter()
        .map(|&i| data.series()[i].name.clone())
        .collect()
}

fn pos_lookup(names: &[String]) -> impl Fn(&str) -> u32 + '_ {
    let map: std::collections::HashMap<&str, u32> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i as u32))
        .collect();
    move |n| map.get(n).copied().unwrap_or(u32::MAX)
}

fn json<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_default()
}

/// A run's shard: its symbols through `run`, with the capital split of the
/// whole selection, written as a part.
pub(super) fn run_shard(
    s: &super::run::RunSettings,
    spec: ShardSpec,
    data: &Dataset,
    plan: &RunPlan,
    (pool, cache): (&rayon::ThreadPool, &Cache),
    signals: Option<&SignalsFile>,
    progress: &dyn Progress,
) -> Result<PartDone> {
    let t0 = Instant::now();
    let strategy = &s.strategy;
    // The whole selection decides the split: every shard counts the same.
    let (active_all, skipped_all) = prepare(data, plan)?;
    let inputs_hash = super::identity::with_signals(
        super::identity::run_inputs(data, plan, strategy),
        signals.map(|f| &f.source),
    );
    let names = names(data, plan);
    let pos_of = pos_lookup(&names);
    let shard_plan = RunPlan {
        series: spec.filter(data, &plan.series),
        ..plan.clone()
    };
    let shard_active = active_all
        .iter()
        .filter(|a| spec.owns(&data.series()[a.idx].name))
        .count();
    let skipped_window = owned_skipped(spec, &skipped_all, &pos_of);
    let dir = parts_dir(s.out.as_ref(), &inputs_hash);
    let mut writer = PartWriter::create(&dir, spec, &names, true, s.force)?;
    let mut processed = 0;
    let shared = strategy.execution.allocation == Allocation::Shared;
    let mut book = None;
    if shared && shard_active > 0 {
        // The account needs every symbol: store this shard's signals and
        // the bars the account reads, for `merge` to trade.
        let active: Vec<ActiveSeries> = active_all
            .iter()
            .filter(|a| spec.owns(&data.series()[a.idx].name))
            .cloned()
            .collect();
        progress.start("symbols", active.len() as u64);
        let r = pool.install(|| {
            shared_book_part(
                data,
                &active,
                (strategy, signals),
                (cache, s.data.strict),
                &mut writer,
                &pos_of,
                progress,
            )
        });
        progress.finish();
        match r {
            Ok(meta) => {
                processed = meta.len();
                book = Some(meta);
            }
            Err(e) => {
                writer.abandon();
                return Err(e);
            }
        }
    } else if shared {
        // No symbol of this shard has bars in the window: an empty book,
        // still a shared-cash part.
        let src = DataBars(data);
        if let Err(e) = writer.write_book(&[], &src, strategy.execution.has_stops()) {
            writer.abandon();
            return Err(e.into());
        }
        book = Some(Vec::new());
    } else if shard_active > 0 {
        progress.start("symbols", shard_plan.series.len() as u64);
        let r = pool.install(|| {
            run_with_signals(
                data,
                &shard_plan,
                strategy,
                (s.data.strict, Some(active_all.len())),
                cache,
                &|_| progress.tick(),
                signals,
            )
        });
        progress.finish();
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                writer.abandon();
                return Err(e.into());
            }
        };
        super::show_skipped(&r.skipped, progress);
        // `run` lists the window-skipped symbols first, then the failures.
        let failed = r.skipped.get(skipped_window.len()..).unwrap_or_default();
        if let Err(e) = writer.write(0, 0, &r.symbols, failed) {
            writer.abandon();
            return Err(e.into());
        }
        processed = r.symbols.len() + failed.len();
    }
    let capital = strategy.execution.capital / active_all.len() as f64;
    let header = PartHeader {
        format_version: PartHeader::format_for(book.is_some(), signals.is_some()),
        kind: PartKind::Run,
        shard: spec.index,
        shards: spec.count,
        inputs_hash,
        selection: plan.series.len(),
        active_symbols: vec![active_all.len()],
        capital_bits: vec![capital.to_bits()],
        params: json(&PartParams {
            params: strategy,
            grid: None,
            from_us: plan.from,
            to_us: plan.to,
            warmup_bars: plan.warmup_bars,
            split_us: None,
            rank_by: None,
            samples: None,
        }),
        skipped_window,
        symbols: processed,
        context: json(&PartContext {
            strategy_file: Some(s.strategy_file.as_ref().map(|p| p.display().to_string())),
            data_path: s.data.data.display().to_string(),
            sources: data.sources(),
            selection: selection(data, plan),
            combo_bars: None,
            compute_ms: t0.elapsed().as_secs_f64() * 1e3,
        }),
        book,
        signals: signals.map(|f| f.source.clone()),
    };
    let out = writer.finish(&header)?;
    Ok(PartDone {
        dir: out,
        spec,
        symbols: processed,
        selection: plan.series.len(),
        combinations: 0,
    })
}

/// A shared-cash shard's work: its symbols' signals (from the signals
/// file, or the cache or the engine) into the part's `book.parquet`, a
/// chunk at a time, the bars the account reads beside them. Returns the
/// header's `book`: every symbol with bars in the window, in plan order,
/// those the engine refused with their reason. With `strict` a refused
/// series, or one the account's own checks would refuse, ends the shard
/// as it ends the single run.
fn shared_book_part(
    data: &Dataset,
    active: &[ActiveSeries],
    (strategy, signals): (&Strategy, Option<&SignalsFile>),
    (cache, strict): (&Cache, bool),
    writer: &mut PartWriter,
    pos_of: &dyn Fn(&str) -> u32,
    progress: &dyn Progress,
) -> Result<Vec<PartBookSeries>> {
    let src = DataBars(data);
    let stops = strategy.execution.has_stops();
    let mut meta = Vec::with_capacity(active.len());
    for chunk in active.chunks(RUN_CHUNK) {
        let mut failed = Vec::new();
        let series = signals_of(
            data,
            chunk,
            (strategy, signals),
            cache,
            &|_| progress.tick(),
            &mut |symbol, reason| skip_or_fail(&mut failed, strict, symbol, reason),
        )?;
        if strict {
            for s in &series {
                check_series(&src, s, strategy).map_err(|reason| RunError::Strict {
                    symbol: s.symbol.clone(),
                    reason,
                })?;
            }
        }
        let mut written = writer.write_book(&series, &src, stops)?.into_iter();
        let mut failed = failed.into_iter();
        // Back in plan order: the chunk's series, stored or refused.
        for a in chunk {
            let name = &data.series()[a.idx].name;
            let m = match written.as_slice().first() {
                Some(w) if &w.symbol == name => written.next(),
                _ => None,
            };
            let m = match m {
                // The source's zone as the data index records it, as
                // one machine's run.json does.
                Some(m) => PartBookSeries {
                    tz: data.series()[a.idx].tz.clone(),
                    ..m
                },
                None => match failed.next() {
                    Some(f) => PartBookSeries {
                        pos: pos_of(&f.symbol),
                        symbol: f.symbol,
                        from: 0,
                        window_start: 0,
                        window_end: 0,
                        engine_bars: 0,
                        data_ends: false,
                        tz: None,
                        error: Some(f.reason),
                    },
                    None => continue,
                },
            };
            meta.push(m);
        }
    }
    Ok(meta)
}

/// What a sweep's shard needs beside the data.
pub(super) struct SweepShard<'a> {
    pub spec: ShardSpec,
    pub grid: &'a Grid,
    pub samples: &'a [Sample],
    pub split: Option<i64>,
    pub inputs_hash: &'a str,
}

/// A sweep's shard: its symbols through the sweep, with the capital split
/// of the whole selection per sample, written as a part.
pub(super) fn sweep_shard(
    s: &super::sweep::SweepSettings,
    w: SweepShard<'_>,
    data: &Dataset,
    plan: &RunPlan,
    cache: &Cache,
    progress: &dyn Progress,
) -> Result<PartDone> {
    let t0 = Instant::now();
    let (spec, grid, samples, base) = (w.spec, w.grid, w.samples, &s.base);
    let mut counts = Vec::new();
    let mut skipped_all = Vec::new();
    let mut shard_active = 0;
    for smp in samples {
        let p = RunPlan {
            from: smp.from,
            to: smp.to,
            ..plan.clone()
        };
        match prepare(data, &p) {
            Ok((active, sk)) => {
                if smp.name == "full" {
                    skipped_all = sk;
                    shard_active = active
                        .iter()
                        .filter(|a| spec.owns(&data.series()[a.idx].name))
                        .count();
                }
                counts.push(active.len());
            }
            Err(e) if smp.name == "full" => return Err(e.into()),
            Err(_) => counts.push(0),
        }
    }
    let names = names(data, plan);
    let pos_of = pos_lookup(&names);
    let skipped_window = owned_skipped(spec, &skipped_all, &pos_of);
    let shard_plan = RunPlan {
        series: spec.filter(data, &plan.series),
        ..plan.clone()
    };
    let dir = parts_dir(s.out.as_ref(), w.inputs_hash);
    let mut writer = PartWriter::create(&dir, spec, &names, false, s.force)?;
    let mut combo_bars = 0;
    if shard_active > 0 {
        let pool = super::pool(s.threads)?;
        progress.start("combinations", grid.count() as u64);
        let r = pool.install(|| {
            sweep_with(
                data,
                &shard_plan,
                grid,
                base,
                samples,
                s.data.strict,
                cache,
                Some(&counts),
                &mut |_| Ok(()),
                &|| progress.tick(),
                &mut |c, k, done, failed| {
                    writer.write(c, k, done, failed).map_err(|e| e.to_string())
                },
            )
        });
        progress.finish();
        match r {
            Ok(r) => combo_bars = r.combo_bars,
            Err(e) => {
                writer.abandon();
                return Err(e.into());
            }
        }
    }
    let capital: Vec<u64> = counts
        .iter()
        .map(|&n| (base.execution.capital / n.max(1) as f64).to_bits())
        .collect();
    let header = PartHeader {
        format_version: PART_FORMAT_VERSION,
        kind: PartKind::Sweep,
        shard: spec.index,
        shards: spec.count,
        inputs_hash: w.inputs_hash.to_string(),
        selection: plan.series.len(),
        active_symbols: counts,
        capital_bits: capital,
        params: json(&PartParams {
            params: base,
            grid: Some(grid),
            from_us: plan.from,
            to_us: plan.to,
            warmup_bars: plan.warmup_bars,
            split_us: Some(w.split),
            rank_by: Some(&s.rank_by),
            samples: Some(samples),
        }),
        skipped_window,
        symbols: shard_active,
        context: json(&PartContext {
            strategy_file: None,
            data_path: s.data.data.display().to_string(),
            sources: data.sources(),
            selection: selection(data, plan),
            combo_bars: Some(combo_bars),
            compute_ms: t0.elapsed().as_secs_f64() * 1e3,
        }),
        book: None,
        signals: None,
    };
    let out = writer.finish(&header)?;
    Ok(PartDone {
        dir: out,
        spec,
        symbols: shard_active,
        selection: plan.series.len(),
        combinations: grid.count() as u64,
    })
}
