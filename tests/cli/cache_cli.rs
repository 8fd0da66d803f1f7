//! Integration tests of the result cache through the real binary (`cache
//! stats|gc|verify`) and a driver that stays out of the shipped binary:
//! `selftest` (cached signals for N seeded synthetic series; prints a
//! digest of the results and hit/miss counts) and `corrupt` (damages N
//! stored values). The driver is [`cache_driver`], run in a child process
//! of this test binary (the tests need separate processes: kill -9,
//! two processes at once), its arguments in `$ATC_BT_CACHE_DRIVER`.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use atc_bt::cache::{self, Cache, CacheConfig, Kind};
use atc_bt::engine::AtcParams;
use rayon::prelude::*;

const DRIVER_ENV: &str = "ATC_BT_CACHE_DRIVER";

/// A child process of this test binary running the driver with `args`
/// (`selftest …` or `corrupt …`, as the hidden subcommands took them).
fn driver(args: &[&str], dir: &Path) -> Command {
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    all.push("--cache-dir".into());
    all.push(dir.display().to_string());
    let mut c = Command::new(std::env::current_exe().expect("test binary"));
    c.args([
        "--exact",
        "cache_cli::cache_driver",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
        "-q",
    ])
    .env(DRIVER_ENV, all.join("\u{1f}"))
    .env_remove("ATC_CACHE_DIR");
    c
}

/// The driver (not a test: it does nothing unless run by [`driver`]).
#[test]
#[ignore = "run by the other tests in a child process"]
fn cache_driver() {
    let Ok(text) = std::env::var(DRIVER_ENV) else {
        return;
    };
    let args: Vec<&str> = text.split('\u{1f}').collect();
    // A line of its own: libtest has written its header without one.
    println!();
    let code = match run_driver(&args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    };
    std::process::exit(code);
}

fn run_driver(args: &[&str]) -> Result<(), String> {
    let value = |name: &str| {
        args.iter()
            .position(|a| *a == name)
            .and_then(|i| args.get(i + 1))
            .copied()
    };
    let num = |name: &str, default: u64| -> Result<u64, String> {
        value(name).map_or(Ok(default), |v| {
            v.parse().map_err(|e| format!("{name} {v}: {e}"))
        })
    };
    let dir = value("--cache-dir").ok_or("--cache-dir is required")?;
    let ttl = match value("--cache-ttl") {
        Some(v) => Duration::from_millis(
            v.strip_suffix("ms")
                .and_then(|n| n.parse().ok())
                .ok_or(format!("--cache-ttl {v}: give milliseconds, e.g. 300ms"))?,
        ),
        None => Duration::from_secs(30 * 86_400),
    };
    let cfg = CacheConfig {
        dir: atc_bt::locate::cache_dir(
            &atc_bt::locate::data_base(Path::new("data")),
            Some(Path::new(dir)),
        ),
        mem_bytes: 256 << 20,
        disk_bytes: num("--cache-size", 2 << 30)?,
        ttl,
        enabled: !args.contains(&"--no-cache"),
    };
    match args.first() {
        Some(&"corrupt") => {
            let cache = Cache::open(&CacheConfig {
                enabled: true,
                ..cfg
            });
            for w in cache.take_warnings() {
                eprintln!("{w}");
            }
            println!(
                "damaged {}",
                cache.corrupt_values_for_test(num("--count", 1)? as usize)
            );
            Ok(())
        }
        Some(&"selftest") => {
            run_selftest(
                &cfg,
                num("--symbols", 10)?,
                num("--bars", 1500)? as usize,
                num("--params", 1)? as usize,
                num("--hold-ms", 0)?,
            );
            Ok(())
        }
        other => Err(format!("unknown driver command {other:?}")),
    }
}

fn series_hash(close: &[f64]) -> String {
    let mut h = blake3::Hasher::new();
    for c in close {
        h.update(&c.to_bits().to_le_bytes());
    }
    h.finalize().to_hex().to_string()
}

/// Cached signals for `symbols` seeded series: prints a digest of the
/// results and the hit/miss counts per kind.
fn run_selftest(cfg: &CacheConfig, symbols: u64, bars: usize, params: usize, hold_ms: u64) {
    let t0 = Instant::now();
    let cache = Cache::open(cfg);
    let shown = cache.warnings().len();
    for w in cache.warnings() {
        eprintln!("{w}");
    }
    let sets: Vec<AtcParams> = (0..params.max(1))
        .map(|i| AtcParams {
            lambda: 0.02 + 0.01 * i as f64,
            ..AtcParams::default()
        })
        .collect();
    let results: Vec<Vec<(Vec<f64>, Vec<i8>)>> = (0..symbols)
        .into_par_iter()
        .map(|seed| {
            let close = atc_bt::synthetic::random_walk(seed, bars);
            let h = series_hash(&close);
            sets.iter()
                .map(|p| cache::cached_signals(&cache, &h, &close, p))
                .collect()
        })
        .collect();
    let mut d = blake3::Hasher::new();
    for (avg, dir) in results.iter().flatten() {
        for a in avg {
            d.update(&a.to_bits().to_le_bytes());
        }
        d.update(&dir.iter().map(|&x| x as u8).collect::<Vec<_>>());
    }
    std::thread::sleep(Duration::from_millis(hold_ms));
    cache.flush();
    for w in cache.warnings().iter().skip(shown) {
        eprintln!("{w}");
    }
    println!("digest {}", d.finalize().to_hex());
    let st = cache.stats();
    for k in Kind::ALL {
        println!("{}", st.this_run[k.index()].line(k));
    }
    println!("l2 {}", if cache.has_l2() { "on" } else { "off" });
    println!("elapsed_ms {:.1}", t0.elapsed().as_secs_f64() * 1e3);
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_atc-bt"));
    c.env_remove("ATC_CACHE_DIR");
    c
}

fn selftest(dir: &Path, extra: &[&str]) -> Output {
    selftest_n(dir, 12, extra)
}

fn selftest_n(dir: &Path, symbols: u64, extra: &[&str]) -> Output {
    let n = symbols.to_string();
    let mut args = vec!["selftest", "--symbols", &n, "--bars", "600"];
    args.extend_from_slice(extra);
    let out = driver(&args, dir).output().expect("run the cache driver");
    assert!(
        out.status.success(),
        "selftest failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn digest(o: &Output) -> String {
    stdout(o)
        .lines()
        .find_map(|l| l.strip_prefix("digest ").map(str::to_string))
        .expect("digest line")
}

fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} line in {text}"))
}

fn no_cache_digest() -> String {
    let t = tempfile::tempdir().unwrap();
    digest(&selftest(t.path(), &["--no-cache"]))
}

#[test]
fn rerun_hits_every_entry_with_the_same_digest() {
    let t = tempfile::tempdir().unwrap();
    let cold = selftest(t.path(), &[]);
    let warm = selftest(t.path(), &[]);
    assert_eq!(digest(&cold), digest(&warm));
    assert_eq!(digest(&cold), no_cache_digest());
    assert!(line(&stdout(&cold), "signals:").contains("misses 12"));
    assert!(
        line(&stdout(&warm), "signals:").contains("hits 12 (l1 0, l2 12) misses 0"),
        "{}",
        stdout(&warm)
    );
    assert!(line(&stdout(&warm), "signals:").contains("hit-rate 100.0%"));
    // stats shows the last run and the totals.
    let st = bin()
        .args(["cache", "stats", "--cache-dir"])
        .arg(t.path())
        .output()
        .unwrap();
    assert!(st.status.success());
    let s = stdout(&st);
    assert!(s.contains("signals        12 entries"), "{s}");
    // Whole-run entries are listed too (none stored by selftest).
    assert!(s.contains("run             0 entries"), "{s}");
    assert!(s.contains("  run: hits 0"), "{s}");
    assert!(s.contains("all: hit-rate"), "{s}");
}

#[test]
fn kill_9_mid_run_leaves_a_usable_cache() {
    let t = tempfile::tempdir().unwrap();
    let want = no_cache_digest();
    let mut killed_running = 0;
    // Kill points as shares of an uninterrupted cold run on this machine
    // (fixed delays let a fast machine finish before the first kill).
    let work = ["selftest", "--symbols", "400", "--bars", "600"];
    let scratch = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let full = driver(&work, scratch.path()).output().unwrap();
    assert!(
        full.status.success(),
        "{}",
        String::from_utf8_lossy(&full.stderr)
    );
    let whole = started.elapsed();
    for share in [0.15, 0.4, 0.7] {
        let delay_ms = (whole.as_secs_f64() * share * 1000.0) as u64;
        let mut child = driver(&work, t.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL; it may have finished already
        let status = child.wait().unwrap();
        // Killed by the signal, so it was still running when killed.
        if std::os::unix::process::ExitStatusExt::signal(&status) == Some(9) {
            killed_running += 1;
        }
        let again = selftest(t.path(), &[]);
        assert_eq!(digest(&again), want, "after kill at {delay_ms} ms");
    }
    assert!(
        killed_running > 0,
        "every child finished before its kill: the test proves nothing"
    );
}

#[test]
fn corrupted_values_are_counted_and_recomputed() {
    let t = tempfile::tempdir().unwrap();
    let want = digest(&selftest(t.path(), &[]));
    let c = driver(&["corrupt", "--count", "5"], t.path())
        .output()
        .unwrap();
    assert!(stdout(&c).contains("damaged 5"));
    let again = selftest(t.path(), &[]);
    assert_eq!(digest(&again), want);
    let s = stdout(&again);
    let corrupt: u64 = ["signals:"]
        .iter()
        .map(|k| {
            let l = line(&s, k);
            let n = l
                .split("corrupt ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap();
            n.parse::<u64>().unwrap()
        })
        .sum();
    assert!(corrupt >= 1, "{s}");
    let v = bin()
        .args(["cache", "verify", "--cache-dir"])
        .arg(t.path())
        .output()
        .unwrap();
    assert!(stdout(&v).contains(": 0 bad"), "{}", stdout(&v));
}

#[test]
fn damaged_database_files_never_fail_a_run() {
    let t = tempfile::tempdir().unwrap();
    let want = digest(&selftest(t.path(), &[]));
    let db = t.path().join("db").join("db");
    let mut bytes = std::fs::read(&db).unwrap();
    let n = bytes.len();
    for i in (n / 4..n).step_by(97) {
        bytes[i] ^= 0xff;
    }
    std::fs::write(&db, &bytes).unwrap();
    let again = selftest(t.path(), &[]);
    assert_eq!(digest(&again), want);
    // Truncated too.
    std::fs::write(&db, &bytes[..n / 3]).unwrap();
    assert_eq!(digest(&selftest(t.path(), &[])), want);
    assert_eq!(digest(&selftest(t.path(), &[])), want);
}

#[test]
fn two_processes_at_once_both_succeed_one_runs_l1_only() {
    let t = tempfile::tempdir().unwrap();
    let t2 = tempfile::tempdir().unwrap();
    let want = digest(&selftest_n(t2.path(), 200, &["--no-cache"]));
    // The first process holds the database for a while after computing, so
    // the second always finds it locked, however fast the machine.
    let spawn = |hold: &str| {
        driver(
            &[
                "selftest",
                "--symbols",
                "200",
                "--bars",
                "600",
                "--hold-ms",
                hold,
            ],
            t.path(),
        )
        .env("ATC_CACHE_LOCK_WAIT_MS", "100")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
    };
    let a = spawn("3000");
    std::thread::sleep(Duration::from_millis(300));
    let b = spawn("0");
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success() && b.status.success());
    assert_eq!(digest(&a), want);
    assert_eq!(digest(&b), want);
    let err_b = String::from_utf8_lossy(&b.stderr);
    assert!(err_b.contains("L1 only"), "{err_b}");
    assert_eq!(err_b.lines().count(), 1, "{err_b}");
    assert!(stdout(&b).contains("l2 off"));
    // The first one's results are on disk for the next run.
    let c = selftest_n(t.path(), 200, &[]);
    assert!(line(&stdout(&c), "signals:").contains("misses 0"));
}

#[test]
fn unwritable_cache_dir_warns_and_succeeds() {
    let t = tempfile::tempdir().unwrap();
    let file = t.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let out = selftest(&file.join("cache"), &[]);
    assert_eq!(digest(&out), no_cache_digest());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("without the on-disk cache"), "{err}");
}

#[test]
fn tiny_ttl_expires_entries_and_gc_reclaims_them() {
    let t = tempfile::tempdir().unwrap();
    selftest(t.path(), &["--cache-ttl", "300ms"]);
    std::thread::sleep(Duration::from_millis(500));
    let again = selftest(t.path(), &["--cache-ttl", "300ms"]);
    let s = stdout(&again);
    assert!(line(&s, "signals:").contains("hits 0"), "{s}");
    assert!(line(&s, "signals:").contains("expired 12"), "{s}");
    std::thread::sleep(Duration::from_millis(500));
    let gc = bin()
        .args(["cache", "gc", "--cache-ttl", "300ms", "--cache-dir"])
        .arg(t.path())
        .output()
        .unwrap();
    // Whatever the run's own flush did not reclaim already, gc does.
    assert!(stdout(&gc).contains(" expired"), "{}", stdout(&gc));
    let st = bin()
        .args(["cache", "stats", "--cache-dir"])
        .arg(t.path())
        .output()
        .unwrap();
    let s = stdout(&st);
    assert!(s.contains("  empty"), "{s}");
}

#[test]
fn eviction_under_a_tiny_cap_keeps_the_frequently_used_entries() {
    let t = tempfile::tempdir().unwrap();
    // The "daily" run: 4 series, used 4 times.
    for _ in 0..4 {
        selftest_n(t.path(), 4, &[]);
    }
    let size = |dir: &Path| -> u64 {
        fn walk(p: &Path) -> u64 {
            std::fs::read_dir(p)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| {
                            let m = e.metadata().unwrap();
                            if m.is_dir() {
                                walk(&e.path())
                            } else {
                                m.len()
                            }
                        })
                        .sum()
                })
                .unwrap_or(0)
        }
        walk(dir)
    };
    let base = size(t.path());
    // A sweep of 150 other series under a cap not far above the base.
    let cap = format!("{}", base * 3);
    let out = driver(
        &[
            "selftest",
            "--symbols",
            "154",
            "--bars",
            "600",
            "--cache-size",
            &cap,
        ],
        t.path(),
    )
    .output()
    .unwrap();
    assert!(out.status.success());
    let gc = bin()
        .args(["cache", "gc", "--cache-size", &cap, "--cache-dir"])
        .arg(t.path())
        .output()
        .unwrap();
    assert!(gc.status.success());
    let again = selftest_n(t.path(), 4, &["--cache-size", &cap]);
    assert!(
        line(&stdout(&again), "signals:").contains("hits 4"),
        "{}\n{}",
        stdout(&again),
        stdout(&gc)
    );
    let st = bin()
        .args(["cache", "stats", "--cache-dir"])
        .arg(t.path())
        .output()
        .unwrap();
    let s = stdout(&st);
    let entries: u64 = line(&s, "  signals")
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(entries < 154, "nothing was evicted: {s}");
}
