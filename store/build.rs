//! Embeds `migrations/` at compile time: every `NNNN_name.sql` as a
//! versioned migration, every `functions/*.sql` as a repeatable one. The
//! folder is the registry; the binary carries the SQL and reads no files
//! at run time.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs};

fn sql_files(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut v: Vec<(String, PathBuf)> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display())))
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "sql"))
        .map(|p| {
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_else(|| panic!("{} is not a UTF-8 file name", p.display()))
                .to_string();
            (name, p)
        })
        .collect();
    v.sort();
    v
}

fn main() {
    let root = Path::new(&env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("../migrations");
    let functions = root.join("functions");
    println!("cargo:rerun-if-changed={}", root.display());
    println!("cargo:rerun-if-changed={}", functions.display());
    let mut out = String::from("static MIGRATIONS: &[Migration] = &[\n");
    for (name, path) in sql_files(&root) {
        let version: i32 = name
            .split_once('_')
            .and_then(|(n, _)| (n.len() == 4).then_some(n))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| {
                panic!("migrations/{name}: name it NNNN_what.sql (four digits, then _)")
            });
        writeln!(
            out,
            "    Migration {{ version: {version}, name: {name:?}, sql: include_str!({:?}) }},",
            path.display().to_string()
        )
        .expect("writing to a String");
    }
    out.push_str("];\n\nstatic FUNCTIONS: &[Repeatable] = &[\n");
    if functions.is_dir() {
        for (name, path) in sql_files(&functions) {
            writeln!(
                out,
                "    Repeatable {{ name: {name:?}, sql: include_str!({:?}) }},",
                path.display().to_string()
            )
            .expect("writing to a String");
        }
    }
    out.push_str("];\n");
    let dest = Path::new(&env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("migrations.rs");
    fs::write(&dest, out).unwrap_or_else(|e| panic!("cannot write {}: {e}", dest.display()));
}
