//! The launchers: the Dask launcher on a LocalCluster (2 workers, 3 shards,
//! every shard failing once to exercise retries) gives the single-machine
//! `metrics.json`; the Kubernetes manifests validate against the
//! Kubernetes schema. Each test prints a visible SKIP when Python or the
//! package it needs is missing.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::*;

fn python_has(module: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn skip(what: &str, install: &str) {
    eprintln!("SKIP: {what} (install with: {install})");
    println!("SKIP: {what} (install with: {install})");
}

#[cfg(unix)]
#[test]
fn dask_launcher_on_a_local_cluster_matches_one_machine() {
    use std::os::unix::fs::PermissionsExt;
    if !python_has("distributed") {
        skip(
            "python3 with `distributed` not found; the Dask launcher test did not run",
            "pip install 'dask[distributed]'",
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let series: Vec<Series> = (0..9)
        .map(|k| walk(&format!("D{k}"), 7 + k as u64, 240 + 11 * k))
        .collect();
    let data = t.join("synth.parquet");
    write_ohlcv(&data, &series);
    let store = t.join("store");
    let common_args = |c: &mut assert_cmd::Command| {
        c.arg("run")
            .arg("--data")
            .arg(&data)
            .arg("--store")
            .arg(&store)
            .args(["--from", "2019-05-01"]);
    };
    let single = t.join("single");
    let mut c = atc(&root());
    common_args(&mut c);
    c.arg("--out").arg(&single).arg("-q").assert().success();

    // A wrapper that makes every shard fail on its first attempt.
    let marks = t.join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    let wrapper = t.join("flaky-atc-bt");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nm=\"{}/$(echo \"$@\" | cksum | cut -d' ' -f1)\"\n\
             if [ \"$1\" != merge ] && [ ! -e \"$m\" ]; then touch \"$m\"; echo flaky >&2; exit 1; fi\n\
             exec \"{}\" \"$@\"\n",
            marks.display(),
            env!("CARGO_BIN_EXE_atc-bt")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();

    let merged = t.join("merged");
    let out = Command::new("python3")
        .arg(root().join("deploy/dask/launch.py"))
        .args(["--shards", "3", "--workers", "2", "--retries", "2", "--bin"])
        .arg(&wrapper)
        .arg("--out")
        .arg(&merged)
        .args(["--", "run", "--data"])
        .arg(&data)
        .arg("--store")
        .arg(&store)
        .args(["--from", "2019-05-01"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "launcher failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_dir(&marks).unwrap().count(),
        3,
        "each shard failed once and was retried"
    );
    for f in ["metrics.json", "equity.parquet", "trades.parquet"] {
        assert!(
            std::fs::read(single.join(f)).unwrap() == std::fs::read(merged.join(f)).unwrap(),
            "{f} differs"
        );
    }
}

fn validate(files: &[&Path]) -> std::process::Output {
    Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict", "-k", "1.30.0"])
        .args(files)
        .output()
        .unwrap()
}

#[test]
fn kubernetes_manifests_validate() {
    let job = root().join("deploy/k8s/job.yaml");
    let merge = root().join("deploy/k8s/merge-pod.yaml");
    let text = std::fs::read_to_string(&job).unwrap();
    assert!(text.contains("completionMode: Indexed"));
    // N appears in `completions` and in --shard=auto/N: they must agree.
    let completions = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("completions:"))
        .and_then(|v| v.split('#').next())
        .map(|v| v.trim().to_string())
        .unwrap();
    assert!(
        text.contains(&format!("--shard=auto/{completions}")),
        "completions {completions} and --shard=auto/N disagree"
    );
    if !python_has("kubernetes_validate") {
        skip(
            "python3 with `kubernetes_validate` not found; the manifests were not validated against the Kubernetes schema",
            "pip install kubernetes-validate",
        );
        return;
    }
    let out = validate(&[&job, &merge]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The validator does catch a broken manifest (it is not a no-op).
    let tmp = tempfile::tempdir().unwrap();
    let broken = tmp.path().join("broken.yaml");
    std::fs::write(
        &broken,
        text.replace(&format!("completions: {completions}"), "completions: eight")
            .replace(
                "restartPolicy: Never",
                "restartPolicy: Never\n      restartPolcy: Never",
            ),
    )
    .unwrap();
    assert!(!validate(&[&broken]).status.success());
}
