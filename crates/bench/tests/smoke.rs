//! `bench/run --smoke` end to end, so the benchmark harness cannot rot: it starts tokenwarden,
//! nginx and the baselines, drives every scenario for a fraction of a second (no Apache, no
//! wrk) and prints the table. No timing is asserted: only that rows came out with numbers.
//!
//! Uses the `tokenwarden` binary beside this package's `tokenwarden-bench` in the target
//! directory (`cargo test --workspace`, as `./test` runs it, builds both).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::process::Command;

#[test]
fn smoke_run_prints_a_table_with_numbers() {
    let helper = Path::new(env!("CARGO_BIN_EXE_tokenwarden-bench"));
    let bin_dir = helper.parent().unwrap();
    assert!(
        bin_dir.join("tokenwarden").exists(),
        "{} not found: build it first (cargo build -p tokenwarden; `cargo test --workspace` does)",
        bin_dir.join("tokenwarden").display()
    );
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new("python3")
        .arg(workspace.join("bench/run"))
        .arg("--smoke")
        .arg("--bin-dir")
        .arg(bin_dir)
        .output()
        .expect("run python3 bench/run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench/run --smoke failed: {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}", out.status);

    // Rows of the results table: `| scenario | what | conns | rate | p50 | p99 | cpu | answers |`.
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| #") && !l.starts_with("| target"))
        .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
        .filter(|cells: &Vec<&str>| cells.len() == 8)
        .collect();
    for scenario in ["1", "2", "3", "4", "5", "6", "7", "8", "9"] {
        let measured: Vec<_> = rows.iter().filter(|r| r[0] == scenario && !r[7].is_empty()).collect();
        assert!(!measured.is_empty(), "no measured row for scenario {scenario}\n{stdout}");
        for row in measured {
            let rate: f64 = row[3].split_whitespace().next().unwrap().replace(',', "").parse().unwrap_or(0.0);
            assert!(rate > 0.0, "scenario {scenario}: no requests/s in {row:?}\n{stdout}");
            let p50: f64 = row[4].parse().unwrap_or(-1.0);
            let p99: f64 = row[5].parse().unwrap_or(-1.0);
            assert!(p50 >= 0.0 && p99 >= p50, "scenario {scenario}: bad latencies in {row:?}");
            assert!(row[6].parse::<f64>().is_ok(), "scenario {scenario}: no CPU figure in {row:?}");
            assert!(!row[7].contains("errors"), "scenario {scenario}: transport errors in {row:?}");
        }
    }
    // Every target is judged (met or missed: a smoke run's figures mean nothing).
    let verdicts = stdout.lines().filter(|l| l.ends_with("| met |") || l.ends_with("| **missed** |")).count();
    assert!(verdicts >= 8, "expected the targets' verdicts\n{stdout}");
    // The ratios a noisy host moves most are judged on alternated pairs (two in a smoke run).
    for target in ["1: cached proxy ≥ 90 %", "3: cached Check ≥ 85 %", "3: uncached Check ≥ 60 %", "6: RS256 issuance ≥ 80 %"] {
        let line = stdout.lines().find(|l| l.starts_with(&format!("| {target}"))).unwrap_or_else(|| panic!("no verdict for {target}\n{stdout}"));
        assert!(line.contains("median of 2 alternated pairs"), "{target}: not judged on the pairs: {line}");
    }
    // On a CPU with AVX-512 IFMA, one more pair is measured with both sides off it (not a verdict).
    let ifma = std::fs::read_to_string("/proc/cpuinfo")
        .is_ok_and(|info| info.lines().any(|l| l.starts_with("flags") && l.split_whitespace().any(|flag| flag == "avx512ifma")));
    if ifma {
        let line = stdout.lines().find(|l| l.starts_with("| 6: RS256 issuance")).unwrap();
        assert!(line.contains("both without AVX-512 IFMA: "), "no pair without IFMA in the RS256 verdict: {line}");
        assert!(
            rows.iter().any(|r| r[1] == "TokenRequest RS256, both without AVX-512 IFMA" && r[7].starts_with("201×")),
            "no TokenRequest row without IFMA\n{stdout}"
        );
        assert!(rows.iter().any(|r| r[1] == "openssl speed -multi 2 rsa2048, both without AVX-512 IFMA"), "no openssl row without IFMA\n{stdout}");
    } else {
        assert!(!stdout.contains("without AVX-512 IFMA"), "a pair without IFMA on a CPU that has none\n{stdout}");
    }
    assert!(!stdout.contains("Traceback") && !stderr.contains("Traceback"), "{stderr}");
}
