//! Embeds build information and the board profiles into the binary.
//!
//! Every `boards/*.toml` is embedded (so `edgevox plan --board NAME` works anywhere); the one
//! named by `EDGEVOX_BOARD` becomes the default profile. Without `EDGEVOX_BOARD`, an x86_64
//! build defaults to the `x86_64` development profile and any other target must name its
//! board. An unknown board, or one made for another target, fails the build here.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    let profile = std::env::var("PROFILE").unwrap_or_default();
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=EDGEVOX_BOARD");

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("boards");
    let mut boards: Vec<(String, std::path::PathBuf)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    boards.sort();
    // Each profile, not the directory: boards/ also holds the packaging (boards/deb), which
    // must not rebuild the program. A new profile is picked up when EDGEVOX_BOARD names it.
    for (_, path) in &boards {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    let names: Vec<&str> = boards.iter().map(|(n, _)| n.as_str()).collect();

    let wanted = std::env::var("EDGEVOX_BOARD")
        .ok()
        .filter(|b| !b.is_empty());
    let board = match wanted {
        Some(b) => b,
        None if target.starts_with("x86_64") => "x86_64".to_string(),
        None => fail(&format!(
            "building for {target}: set EDGEVOX_BOARD to one of {} (e.g. make cross BOARD=rpi4)",
            names.join(", ")
        )),
    };
    let Some((_, path)) = boards.iter().find(|(n, _)| *n == board) else {
        fail(&format!(
            "unknown board {board:?} (EDGEVOX_BOARD): the boards are {}",
            names.join(", ")
        ))
    };
    let text = std::fs::read_to_string(path).unwrap();
    let board_target = text
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("target =")
                .or(l.trim().strip_prefix("target="))
        })
        .map(|v| v.trim().trim_matches('"').to_string())
        .unwrap_or_else(|| fail(&format!("{}: no `target` triple", path.display())));
    if board_target != target {
        fail(&format!(
            "board {board} is for {board_target}, but this build targets {target}: \
             build it with `make cross BOARD={board}`"
        ));
    }

    let mut src = String::from("/// Every board profile in `boards/`, by name.\n");
    src += "pub const BOARDS: &[(&str, &str)] = &[\n";
    for (name, path) in &boards {
        writeln!(
            src,
            "    ({name:?}, include_str!({:?})),",
            path.display().to_string()
        )
        .unwrap();
    }
    src += "];\n";
    writeln!(
        src,
        "/// The board this binary was built for.\npub const DEFAULT_BOARD: &str = {board:?};"
    )
    .unwrap();
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("boards.rs");
    std::fs::write(out, src).unwrap();

    println!("cargo:rustc-env=EDGEVOX_BUILD_INFO={target} {profile} board={board}");
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    panic!("{msg}");
}
