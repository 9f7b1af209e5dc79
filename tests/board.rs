//! Boards and budgets with the real models: the plan of every profile, the refusal of a board
//! that cannot fit, the downgrade of one that fits only with smaller variants, and the plan
//! checked against resident memory measured on this machine with the profile's models.

mod common;

use std::process::Command;

use common::{cache, stderr, stdout};
use serde_json::Value;

fn edgevox(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_edgevox"))
        .args(args)
        .env("EDGEVOX_CACHE", cache().root())
        .output()
        .unwrap()
}

fn plan(board: &str, measure: bool) -> Value {
    let mut args = vec!["plan", "--board", board, "--json"];
    if measure {
        args.push("--measure");
    }
    let o = edgevox(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_str(&stdout(&o)).unwrap()
}

const MIB: f64 = 1024.0 * 1024.0;

#[test]
fn every_board_is_planned_and_one_over_budget_is_refused_with_the_numbers() {
    let all = plan("all", false);
    let all = all.as_array().unwrap();
    assert!(all.len() >= 5);
    let by_name = |n: &str| {
        &all.iter()
            .find(|p| p["plan"]["board"] == n)
            .unwrap_or_else(|| panic!("{n} missing"))["plan"]
    };
    for b in ["rpi4", "rpi5", "x86_64", "glasses-1g"] {
        let p = by_name(b);
        assert_eq!(p["fits"], true, "{p}");
        assert!(p["downgraded_from"].is_null(), "{p}");
        assert!(p["peak_bytes"].as_u64() <= p["budget_bytes"].as_u64());
    }
    // The Zero 2 W fits its 360 MiB with the GGUF's blocks memory-mapped (the q4 export, 2x
    // its file in RSS, did not fit at all), with Whisper q5_1 and a 1024-token context (the
    // past moved into each step, not cloned: 512 before).
    let z = by_name("rpi-zero-2w");
    assert_eq!(z["fits"], true, "{z}");
    assert!(z["downgraded_from"].is_null(), "{z}");
    assert_eq!(z["choice"]["whisper"], "q5_1", "{z}");
    assert!(z["choice"]["context"].as_u64().unwrap() >= 1024, "{z}");
    let x86_peak = by_name("x86_64")["peak_bytes"].as_f64().unwrap() / MIB;

    // A board whose budget no choice fits: refused before anything loads, with the numbers.
    let dir = std::env::temp_dir().join(format!("edgevox-board-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tight = dir.join("tight.toml");
    let profile = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("boards/x86_64.toml"),
    )
    .unwrap()
    .replace("name = \"x86_64\"", "name = \"tight\"")
    .replace("budget_mb = 1024", "budget_mb = 200");
    std::fs::write(&tight, profile).unwrap();
    let t = plan(tight.to_str().unwrap(), false);
    let t = &t.as_array().map_or(&t, |a| &a[0])["plan"];
    assert_eq!(t["fits"], false, "{t}");
    let o = edgevox(&[
        "run",
        "--board",
        tight.to_str().unwrap(),
        "--input",
        cache().synthetic("capital.wav").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let e = stderr(&o);
    let needs = format!("needs {:.0} MiB", t["peak_bytes"].as_f64().unwrap() / MIB);
    assert!(e.contains(&needs) && e.contains("budget is 200 MiB"), "{e}");
    assert!(
        !e.contains("whisper_model_load"),
        "something was loaded: {e}"
    );

    // One that fits only with the smaller Whisper (a few MiB under the x86_64 plan; q5_1
    // saves ~20): downgraded, and says from what.
    let snug = dir.join("snug.toml");
    std::fs::write(
        &snug,
        std::fs::read_to_string(&tight).unwrap().replace(
            "budget_mb = 200",
            &format!("budget_mb = {}", x86_peak.floor() as u64 - 4),
        ),
    )
    .unwrap();
    let s = plan(snug.to_str().unwrap(), false);
    let s = &s.as_array().map_or(&s, |a| &a[0])["plan"];
    assert_eq!(s["fits"], true, "{s}");
    assert_eq!(s["downgraded_from"]["whisper"], "q8_0", "{s}");
    assert_eq!(s["choice"]["whisper"], "q5_1", "{s}");

    // The Zero 2 W's profile listening for a wake word: the planner counts it, and it still fits with
    // Whisper q5_1 and a 1024-token context.
    let zw = dir.join("zero-wake.toml");
    std::fs::write(
        &zw,
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("boards/rpi-zero-2w.toml"),
        )
        .unwrap()
        // A profile file must be for this build's target: the Zero's budget and models, run
        // here.
        .replace("aarch64-unknown-linux-gnu", "x86_64-unknown-linux-gnu")
        .replace("[audio]\n", "[audio]\nwake = \"hey_jarvis\"\n"),
    )
    .unwrap();
    let w = plan(zw.to_str().unwrap(), false);
    let w = &w.as_array().map_or(&w, |a| &a[0])["plan"];
    assert_eq!(w["fits"], true, "{w}");
    assert_eq!(w["choice"]["wake"], true, "{w}");
    assert_eq!(w["choice"]["whisper"], "q5_1", "{w}");
    assert!(w["choice"]["context"].as_u64().unwrap() >= 1024, "{w}");
    // With an 8-bit KV cache the Zero holds twice the context in about the same memory: the
    // planner counts 34 bytes per 32 values (12,240 B a token for SmolLM2, f16 23,040).
    let zq = dir.join("zero-q8.toml");
    std::fs::write(
        &zq,
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("boards/rpi-zero-2w.toml"),
        )
        .unwrap()
        .replace("aarch64-unknown-linux-gnu", "x86_64-unknown-linux-gnu")
        .replace("context = 1024", "context = 2048\nkv_cache = \"q8\""),
    )
    .unwrap();
    let q = plan(zq.to_str().unwrap(), false);
    let q = &q.as_array().map_or(&q, |a| &a[0])["plan"];
    assert_eq!(q["fits"], true, "{q}");
    assert!(q["downgraded_from"].is_null(), "{q}");
    assert_eq!(q["choice"]["kv"], "q8", "{q}");
    assert_eq!(q["choice"]["context"], 2048, "{q}");
    let kv_item = |p: &Value| {
        p["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["what"].as_str().unwrap().starts_with("KV cache"))
            .unwrap()["bytes"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(kv_item(q), 12_240 * 2048, "{q}");
    assert_eq!(
        kv_item(z),
        23_040 * z["choice"]["context"].as_u64().unwrap(),
        "{z}"
    );
    assert_eq!(z["choice"]["kv"], "f16", "{z}");
    let grew = w["peak_bytes"].as_f64().unwrap() - z["peak_bytes"].as_f64().unwrap();
    assert!(
        (8.0 * MIB..=20.0 * MIB).contains(&grew),
        "the wake word adds {grew} bytes"
    );

    let o = edgevox(&["plan", "--board", "no-such-board"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("unknown board \"no-such-board\""));
}

/// The plan must never be under what this machine measures with the profile's models, and
/// at most 20% over it (it is deliberately conservative).
fn check_against_measured(board: &str) {
    let v = plan(board, true);
    let planned = v["plan"]["peak_bytes"].as_f64().unwrap();
    let measured = v["measured"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["peak_rss_bytes"].as_f64().unwrap())
        .fold(0.0, f64::max);
    let ratio = planned / measured;
    assert!(
        (1.0..=1.2).contains(&ratio),
        "{board}: planned {:.1} MiB, measured {:.1} MiB (ratio {ratio:.3})",
        planned / MIB,
        measured / MIB
    );
    assert!(measured <= v["plan"]["budget_bytes"].as_f64().unwrap());
}

#[test]
fn the_plan_holds_against_measured_memory_for_the_glasses() {
    check_against_measured("glasses-1g");
}

#[test]
fn the_plan_holds_against_measured_memory_for_the_dev_board() {
    check_against_measured("x86_64");
}

#[test]
fn bench_kernels_reports_both_paths_for_every_kernel() {
    let o = edgevox(&["bench", "kernels", "--runs", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let want = if cfg!(target_arch = "aarch64") {
        "neon"
    } else {
        "portable"
    };
    assert_eq!(v["implementation"], want);
    let names: Vec<&str> = v["kernels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kernel"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "argmax",
            "peak_abs",
            "sum_squares",
            "i16_to_f32",
            "dot",
            "axpy"
        ]
    );
    for k in v["kernels"].as_array().unwrap() {
        assert!(k["ns_per_call"].as_f64().unwrap() > 0.0, "{k}");
        assert!(k["portable_ns_per_call"].as_f64().unwrap() > 0.0, "{k}");
    }
    // The echo canceller runs far faster than real time (it sees every microphone sample).
    let aec = &v["echo_canceller"];
    assert_eq!(aec["taps"], 1024);
    let rtf = aec["real_time_factor"].as_f64().unwrap();
    assert!(rtf > 0.0 && rtf < 0.5, "{aec}");
}

/// `run --show-config`: the resolved settings and the plan, without loading a model.
fn show_config(args: &[&str]) -> Value {
    let mut all = vec!["run", "--show-config"];
    all.extend_from_slice(args);
    let o = edgevox(&all);
    assert!(o.status.success(), "{all:?}: {}", stderr(&o));
    serde_json::from_str(&stdout(&o)).unwrap()
}

#[test]
fn a_flag_wins_over_the_board_profile_which_wins_over_the_default() {
    use serde_json::json;
    // Nothing given: the defaults, planned against the board this binary was built for.
    let none = show_config(&[]);
    let c = &none["config"];
    assert_eq!(
        c["llm_threads"],
        json!({"value": 1, "from": "default"}),
        "{none}"
    );
    assert_eq!(c["whisper"], json!({"value": "q8_0", "from": "default"}));
    assert_eq!(c["wake"], json!({"value": "off", "from": "default"}));

    // The profile's values (the Zero 2 W: 4 whisper threads, 2 LLM threads, whisper q5_1).
    let board = show_config(&["--board", "rpi-zero-2w"]);
    let c = &board["config"];
    assert_eq!(c["board"], "rpi-zero-2w");
    assert_eq!(
        c["llm_threads"],
        json!({"value": 2, "from": "board"}),
        "{board}"
    );
    assert_eq!(c["asr_threads"], json!({"value": 4, "from": "board"}));
    assert_eq!(c["whisper"], json!({"value": "q5_1", "from": "board"}));
    assert_eq!(c["capture"], json!({"value": "default", "from": "board"}));
    assert_eq!(board["plan"]["choice"]["wake"], false);
    assert_eq!(c["kv_cache"], json!({"value": "f16", "from": "board"}));

    // A flag beats the profile, setting by setting; the rest stays the profile's. The wake
    // word a flag asks for is in the plan (its networks' memory), and a context a flag gives
    // is planned as given.
    let flagged = show_config(&[
        "--board",
        "rpi-zero-2w",
        "--threads",
        "1",
        "--echo-ratio",
        "0.9",
        "--wake",
        "hey_jarvis",
        "--context",
        "512",
        "--kv-cache",
        "q8",
    ]);
    let c = &flagged["config"];
    assert_eq!(
        c["llm_threads"],
        json!({"value": 1, "from": "flag"}),
        "{flagged}"
    );
    assert_eq!(c["asr_threads"], json!({"value": 4, "from": "board"}));
    assert_eq!(c["echo_ratio"]["from"], "flag");
    assert!((c["echo_ratio"]["value"].as_f64().unwrap() - 0.9).abs() < 1e-6);
    assert_eq!(c["wake"], json!({"value": "hey_jarvis", "from": "flag"}));
    assert_eq!(c["context"], json!({"value": 512, "from": "flag"}));
    assert_eq!(c["kv_cache"], json!({"value": "q8", "from": "flag"}));
    let p = &flagged["plan"];
    assert_eq!(p["choice"]["kv"], "q8", "{p}");
    assert_eq!(p["choice"]["wake"], true, "{p}");
    assert_eq!(p["choice"]["context"], 512);
    assert!(
        p["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["stage"] == "wake"),
        "{p}"
    );

    // The help states the rule.
    let help = stdout(&edgevox(&["run", "--help"]));
    assert!(help.contains("a flag (or its environment variable) wins over the board profile"));
    // The defaults the help shows are the ones the configuration uses.
    use edgevox::config::defaults;
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    for shown in [
        format!("[default: {};", defaults::CONTEXT),
        format!("[default: {};", defaults::WHISPER),
        format!("[default: {};", defaults::ASR_THREADS),
        format!("[default: {};", defaults::LLM_THREADS),
        format!("[default: {};", defaults::ECHO_RATIO),
        format!("[default: {};", defaults::WAKE),
    ] {
        assert!(help.contains(&shown), "run --help lacks {shown:?}");
    }
}
