//! Integration tests of the result cache through the real binary, using the
//! hidden `atc-bt cache selftest` driver (cached signals for N seeded
//! synthetic series; prints a digest of the results and hit/miss counts).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_atc-bt"));
    c.env_remove("ATC_CACHE_DIR");
    c
}

fn selftest(dir: &Path, extra: &[&str]) -> Output {
    selftest_n(dir, 12, extra)
}

fn selftest_n(dir: &Path, symbols: u64, extra: &[&str]) -> Output {
    let mut c = bin();
    let n = symbols.to_string();
    c.args([
        "cache",
        "selftest",
        "--symbols",
        &n,
        "--bars",
        "600",
        "--cache-dir",
    ])
    .arg(dir)
    .args(extra);
    let out = c.output().expect("run atc-bt");
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
    for delay_ms in [150u64, 400, 900] {
        let mut child = bin()
            .args([
                "cache",
                "selftest",
                "--symbols",
                "400",
                "--bars",
                "600",
                "--cache-dir",
            ])
            .arg(t.path())
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
    let c = bin()
        .args(["cache", "corrupt", "--count", "5", "--cache-dir"])
        .arg(t.path())
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
        bin()
            .env("ATC_CACHE_LOCK_WAIT_MS", "100")
            .args([
                "cache",
                "selftest",
                "--symbols",
                "200",
                "--bars",
                "600",
                "--hold-ms",
                hold,
                "--cache-dir",
            ])
            .arg(t.path())
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
    let out = bin()
        .args([
            "cache",
            "selftest",
            "--symbols",
            "154",
            "--bars",
            "600",
            "--cache-size",
            &cap,
        ])
        .arg("--cache-dir")
        .arg(t.path())
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
