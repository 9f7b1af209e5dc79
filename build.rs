//! Embeds build information into the binary (`edgevox --version`). Board selection
//! (`EDGEVOX_BOARD`) joins it with the boards issue.

fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    let profile = std::env::var("PROFILE").unwrap_or_default();
    println!("cargo:rustc-env=EDGEVOX_BUILD_INFO={target} {profile}");
    println!("cargo:rerun-if-changed=build.rs");
}
