//! A warm rerun of `atc-bt run` restored without opening the data store or
//! the cache's database (memo + entry manifests + hit journal), and every
//! way it must step aside for the normal path.

use crate::common;

use std::path::{Path, PathBuf};

use common::*;

const RESULT_FILES: [&str; 4] = [
    "metrics.json",
    "equity.parquet",
    "trades.parquet",
    "signals.parquet",
];

/// The line a restore that opened nothing prints.
const NOT_OPENED: &str = "unchanged since the cached run; not opened";

struct Setup {
    tmp: tempfile::TempDir,
    data: PathBuf,
    cache: PathBuf,
}

impl Setup {
    fn new(series: u64) -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("w.parquet");
        write_walks(&data, "W", series, 0, 900, 500);
        let cache = tmp.path().join("cache");
        Setup { tmp, data, cache }
    }

    /// Runs `atc-bt run` into `name`; returns the directory, stdout, stderr.
    fn run(&self, name: &str, extra: &[&str]) -> (PathBuf, String, String) {
        let out = self.tmp.path().join(name);
        let assert = atc(self.tmp.path())
            .arg("run")
            .args(extra)
            .arg("--data")
            .arg(&self.data)
            .arg("--cache-dir")
            .arg(&self.cache)
            .arg("--out")
            .arg(&out)
            .assert()
            .success();
        let o = assert.get_output();
        (
            out,
            String::from_utf8_lossy(&o.stdout).to_string(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    }

    fn stats(&self) -> String {
        let o = atc(self.tmp.path())
            .args(["cache", "stats", "--cache-dir"])
            .arg(&self.cache)
            .assert()
            .success();
        String::from_utf8_lossy(&o.get_output().stdout).to_string()
    }

    /// The directories of the cache's file entries.
    fn entries(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.cache.join("runs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
            .collect();
        v.sort();
        v
    }
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn same(a: &Path, b: &Path, f: &str) {
    assert!(
        std::fs::read(a.join(f)).unwrap() == std::fs::read(b.join(f)).unwrap(),
        "{f} differs between {} and {}",
        a.display(),
        b.display()
    );
}

fn line_of<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find(|l| l.trim_start().starts_with(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{text}"))
}

/// The second identical command restores results and report charts
/// without opening either store, with the bytes of the cold run; its page
/// is what `atc-bt report` draws from the directory; its hits reach
/// `cache stats` through the journal.
#[test]
fn warm_rerun_opens_nothing_and_matches_a_full_render() {
    let s = Setup::new(4);
    let (cold, out, err) = s.run("cold", &[]);
    assert!(!err.contains(NOT_OPENED), "{err}");
    assert!(out.contains("run 0/1 hits"), "{out}");
    let (warm, out, err) = s.run("warm", &[]);
    assert!(err.contains(NOT_OPENED), "{err}");
    assert!(!err.contains("data: opened store"), "{err}");
    assert!(
        out.contains("cache: run 1/1 hits (100%), report 1/1 hits (100%)"),
        "{out}"
    );
    assert!(out.contains("restored from the run cache"), "{out}");
    for f in RESULT_FILES {
        same(&cold, &warm, f);
    }
    let run = json(&warm.join("run.json"));
    assert_eq!(run["cache"]["kinds"]["run"]["hits"], 1, "{run}");
    assert_eq!(run["cache"]["kinds"]["report"]["hits"], 1, "{run}");
    assert_eq!(
        run["inputs_hash"],
        json(&cold.join("run.json"))["inputs_hash"]
    );

    // Every chart but this process's memory timeline is the cold run's.
    let charts = files_under(&cold.join("report_files"));
    assert_eq!(charts, files_under(&warm.join("report_files")));
    assert!(charts.len() > 5, "{charts:?}");
    for f in charts.iter().filter(|f| !f.starts_with("memory.")) {
        same(&cold.join("report_files"), &warm.join("report_files"), f);
    }
    // A full render of the warm directory gives the same page and charts.
    let copy = s.tmp.path().join("rendered");
    std::fs::create_dir(&copy).unwrap();
    for f in files_under(&warm) {
        if f != "report_files" {
            std::fs::copy(warm.join(&f), copy.join(&f)).unwrap();
        }
    }
    atc(s.tmp.path())
        .args(["report", "-q"])
        .arg(&copy)
        .assert()
        .success();
    same(&warm, &copy, "report.html");
    for f in &charts {
        same(&warm.join("report_files"), &copy.join("report_files"), f);
    }

    // A restored file is a copy: rewriting it in place (as editors do)
    // leaves the cache's file, and the next restore, intact.
    std::fs::write(warm.join("metrics.json"), b"{}").unwrap();
    let (again, out, err) = s.run("again", &[]);
    assert!(err.contains(NOT_OPENED), "{err}");
    assert!(out.contains("run 1/1 hits (100%)"), "{out}");
    same(&cold, &again, "metrics.json");

    // The journal is folded into the statistics by the next process that
    // opens the store, then removed.
    assert!(s.cache.join("uses.log").is_file());
    let st = s.stats();
    assert!(!s.cache.join("uses.log").exists());
    let total = &st[st.find("total:").unwrap()..];
    assert!(line_of(total, "run:").contains("hits 2 "), "{st}");
    assert!(line_of(total, "report:").contains("hits 2 "), "{st}");
    let last = &st[st.find("last run:").unwrap()..st.find("total:").unwrap()];
    assert!(line_of(last, "run:").contains("hits 1 "), "{st}");
}

/// A changed source file, a damaged cached file and a past TTL each make
/// the rerun take the normal path, which decides with the store's
/// authority: same results in every case.
#[test]
fn changed_data_damage_and_ttl_fall_back_to_the_store() {
    let s = Setup::new(3);
    let (cold, _, _) = s.run("cold", &["--no-report"]);

    // Same bytes, new modification time: the memo no longer matches, the
    // store opens, and the content-keyed run entry is still restored.
    let f = std::fs::File::options().write(true).open(&s.data).unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
        .unwrap();
    drop(f);
    let (touched, out, err) = s.run("touched", &["--no-report"]);
    assert!(!err.contains(NOT_OPENED), "{err}");
    assert!(err.contains("data: "), "{err}");
    assert!(out.contains("run 1/1 hits (100%)"), "{out}");
    // ... and the rerun after it is fast again (a new memo).
    let (_, _, err) = s.run("fast", &["--no-report"]);
    assert!(err.contains(NOT_OPENED), "{err}");

    // One flipped byte in the cached copy: no restore anywhere, counted
    // corrupt by the store, recomputed.
    let entries = s.entries();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let victim = entries[0].join("trades.parquet");
    let mut bytes = std::fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::remove_file(&victim).unwrap();
    std::fs::write(&victim, bytes).unwrap();
    let (damaged, out, err) = s.run("damaged", &["--no-report"]);
    assert!(!err.contains(NOT_OPENED), "{err}");
    assert!(out.contains("run 0/1 hits"), "{out}");
    let st = s.stats();
    assert!(line_of(&st, "run:").contains("corrupt 1"), "{st}");

    // A TTL shorter than the entry's age: not restored by either path.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (expired, out, err) = s.run("expired", &["--no-report", "--cache-ttl", "200ms"]);
    assert!(!err.contains(NOT_OPENED), "{err}");
    assert!(out.contains("run 0/1 hits"), "{out}");

    for dir in [&touched, &damaged, &expired] {
        for f in RESULT_FILES {
            same(&cold, dir, f);
        }
    }
}

/// Other report flags are another report entry: the results are restored
/// without opening anything only once that entry exists; `--no-report`
/// needs none.
#[test]
fn report_flags_select_their_own_report_entry() {
    let s = Setup::new(3);
    s.run("cold", &[]);
    let (_, out, err) = s.run("all", &["--symbols-in-report", "all"]);
    assert!(!err.contains(NOT_OPENED), "{err}");
    assert!(
        out.contains("run 1/1 hits (100%), report 0/1 hits (0%)"),
        "{out}"
    );
    let (_, out, err) = s.run("all2", &["--symbols-in-report", "all"]);
    assert!(err.contains(NOT_OPENED), "{err}");
    assert!(out.contains("report 1/1 hits (100%)"), "{out}");
    let (plain, out, err) = s.run("plain", &["--no-report"]);
    assert!(err.contains(NOT_OPENED), "{err}");
    assert!(out.contains("cache: run 1/1 hits (100%)\n"), "{out}");
    assert!(!plain.join("report.html").exists());
    assert_eq!(s.entries().len(), 3, "one run and two report entries");
}

/// With the default cache directory (inside the data store's), the first
/// run builds the store without calling it stale (the fast path only
/// reads, it creates nothing), and the second is restored.
#[test]
fn default_cache_dir_first_run_is_a_clean_build() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d.parquet");
    write_walks(&data, "D", 2, 0, 7, 300);
    let run = |name: &str| {
        let o = atc(tmp.path())
            .args(["run", "--no-report", "--data"])
            .arg(&data)
            .arg("--out")
            .arg(tmp.path().join(name))
            .env_remove("ATC_CACHE_DIR")
            .assert()
            .success();
        String::from_utf8_lossy(&o.get_output().stderr).to_string()
    };
    let err = run("first");
    assert!(err.contains("data: built store"), "{err}");
    assert!(!err.contains("stale"), "{err}");
    let err = run("second");
    assert!(err.contains(NOT_OPENED), "{err}");
}
