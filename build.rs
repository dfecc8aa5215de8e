//! Build script: lists the label locales, one per folder of `templates/locales/`, so that
//! adding a locale is adding a folder. Writes `locale_names.rs` (the names, for
//! `domain::language`) and `locale_files.rs` (each locale's Fluent resource embedded with
//! `include_str!`, for `render::labels`), so the daemon reads no file at run time.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    // Read when the script runs, not when it was compiled: a build script binary copied
    // with a target/ folder to another checkout would otherwise embed the first one's files.
    let root = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    let dir = Path::new(&root).join("templates/locales");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut locales: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("a readable folder entry"))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| {
            e.file_name()
                .into_string()
                .expect("a UTF-8 locale folder name")
        })
        .collect();
    locales.sort();
    let mut names =
        String::from("/// The label locales (folders of `templates/locales/`), in name order.\n");
    names.push_str("pub const LOCALES: &[&str] = &[");
    let mut files = String::from("/// Each label locale's Fluent resource, embedded.\n");
    files.push_str("pub const LOCALE_FILES: &[(&str, &str)] = &[\n");
    for l in &locales {
        let ftl = dir.join(l).join("bulletin.ftl");
        assert!(ftl.is_file(), "{} is missing", ftl.display());
        println!("cargo:rerun-if-changed={}", ftl.display());
        write!(names, "{l:?}, ").unwrap();
        writeln!(
            files,
            "    ({l:?}, include_str!({:?})),",
            ftl.display().to_string()
        )
        .unwrap();
    }
    names.push_str("];\n");
    files.push_str("];\n");
    let out = std::env::var("OUT_DIR").expect("OUT_DIR");
    std::fs::write(Path::new(&out).join("locale_names.rs"), names).expect("write locale_names.rs");
    std::fs::write(Path::new(&out).join("locale_files.rs"), files).expect("write locale_files.rs");
}
