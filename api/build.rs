//! Makes the web console's assets available to `include_dir!`: builds
//! `console/dist` with scripts/console.sh (a no-op when it is current) and
//! points `GPUWATCH_CONSOLE_DIR` at it. Without Node.js and the console's
//! sources (e.g. a published crate), a one-page placeholder that says how to
//! build the console is embedded instead, so the API still builds.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest
        .parent()
        .expect("api/ lives in the workspace")
        .to_path_buf();
    let console = root.join("console");
    for p in [
        "src",
        "index.html",
        "package.json",
        "package-lock.json",
        "vite.config.js",
        "dist",
    ] {
        println!("cargo:rerun-if-changed={}", console.join(p).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        root.join("scripts/console.sh").display()
    );
    let dist = console.join("dist");
    let script = root.join("scripts/console.sh");
    // Without npm the script would install it with apt-get: a build must
    // not do that, the project's scripts do (test.sh, quickstart.sh, CI).
    let npm = Command::new("npm")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if npm && console.join("package.json").exists() && script.exists() {
        match Command::new(&script).status() {
            Ok(s) if s.success() => {}
            Ok(s) => {
                println!("cargo:warning=scripts/console.sh failed ({s}); run it by hand to see why")
            }
            Err(e) => println!("cargo:warning=scripts/console.sh did not start: {e}"),
        }
    }
    let dir = if dist.join("index.html").exists() {
        dist
    } else {
        println!("cargo:warning=the web console is not built; `gpuwatch serve` shows a placeholder at / (run scripts/console.sh)");
        placeholder()
    };
    println!("cargo:rustc-env=GPUWATCH_CONSOLE_DIR={}", dir.display());
}

fn placeholder() -> PathBuf {
    let out =
        PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("console-placeholder");
    std::fs::create_dir_all(&out).expect("OUT_DIR is writable");
    write(
        &out.join("index.html"),
        "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>gpuwatch</title>\
         <p>This gpuwatch was built without its web console. Install Node.js and npm, run \
         <code>scripts/console.sh</code> in the source tree, and build again. The API is at \
         <a href=\"/api/v1/openapi.json\">/api/v1</a>.</p></html>\n",
    );
    out
}

fn write(path: &Path, text: &str) {
    // Rewriting an unchanged file would make cargo rebuild the crate every time.
    if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
        std::fs::write(path, text).expect("OUT_DIR is writable");
    }
}
