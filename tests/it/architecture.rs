//! The module graph of `src/` has no cycles. Every `src/**/*.rs` file is read; its
//! `crate::…` paths (in `use` items, brace groups included, and in expressions) and its
//! `super::…` paths are edges from its module to the module they name. Nodes are the
//! top-level modules (`config`, `store`, `render`, …) and, for the modules in [`SPLIT`],
//! their submodules (`http::admin`). Comments, string and character literals are skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Modules whose submodules are nodes of their own (a cycle between two of them counts).
const SPLIT: &[&str] = &["http"];

/// Mutual dependencies tolerated while a refactor is under way: the edges between each
/// pair (both directions) are left out of the graph, and a pair that no longer depends
/// both ways fails the test. None today: keep it that way.
const ALLOWED_PAIRS: &[(&str, &str)] = &[];

/// One edge: from a module to another, with the first place it is written.
type Graph = BTreeMap<String, BTreeMap<String, String>>;

#[test]
fn no_module_depends_on_itself_through_others() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect(&root, &root, &mut files);
    assert!(files.len() > 20, "read only {} files", files.len());
    let mut graph = graph_of(&files);
    for &(a, b) in ALLOWED_PAIRS {
        let both = has_edge(&graph, a, b) && has_edge(&graph, b, a);
        assert!(
            both,
            "ALLOWED_PAIRS lists {a} <-> {b}, but they no longer depend on each other: \
             remove the pair from the list"
        );
        for (x, y) in [(a, b), (b, a)] {
            if let Some(out) = graph.get_mut(x) {
                out.remove(y);
            }
        }
    }
    let cycles = cycles(&graph);
    assert!(
        cycles.is_empty(),
        "module cycles (each a -> b names where a uses b):\n{}",
        cycles.join("\n")
    );
}

fn has_edge(g: &Graph, a: &str, b: &str) -> bool {
    g.get(a).is_some_and(|o| o.contains_key(b))
}

/// Every `.rs` file under `dir`, as (path relative to `src/`, text).
fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect(root, &p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            out.push((rel, std::fs::read_to_string(&p).unwrap()));
        }
    }
}

/// The module path of a file: `http/admin.rs` → [http, admin], `store/mod.rs` → [store].
/// None for the binary's `main.rs` (its `crate` is another crate).
fn module_path(rel: &str) -> Option<Vec<String>> {
    let rel = rel.strip_suffix(".rs")?;
    if rel == "main" || rel.starts_with("bin/") {
        return None;
    }
    let mut parts: Vec<String> = rel.split('/').map(str::to_string).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    Some(parts)
}

/// The dependency graph of a set of files (paths relative to `src/`).
fn graph_of(files: &[(String, String)]) -> Graph {
    // Submodules of the split modules, as files or folders say.
    let mut subs: BTreeSet<(String, String)> = BTreeSet::new();
    for (rel, _) in files {
        if let Some(p) = module_path(rel) {
            if p.len() >= 2 && SPLIT.contains(&p[0].as_str()) {
                subs.insert((p[0].clone(), p[1].clone()));
            }
        }
    }
    let node = |path: &[String]| -> Option<String> {
        let first = path.first()?;
        match path.get(1) {
            Some(second) if subs.contains(&(first.clone(), second.clone())) => {
                Some(format!("{first}::{second}"))
            }
            _ => Some(first.clone()),
        }
    };
    let mut graph = Graph::new();
    for (rel, text) in files {
        let Some(file_module) = module_path(rel) else {
            continue;
        };
        for (from, to, line) in references(&file_module, text) {
            let (Some(a), Some(b)) = (node(&from), node(&to)) else {
                continue;
            };
            if a != b {
                graph
                    .entry(a)
                    .or_default()
                    .entry(b)
                    .or_insert_with(|| format!("src/{rel}:{line}"));
            }
        }
    }
    graph
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Path, // `::`
    Punct(char),
}

/// The code of a file as tokens with their line numbers; comments and literals dropped.
fn tokens(src: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    let count = |from: usize, to: usize| {
        c[from..to.min(c.len())]
            .iter()
            .filter(|&&x| x == '\n')
            .count()
    };
    while i < c.len() {
        let ch = c[i];
        let next = c.get(i + 1).copied();
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && next == Some('*') {
            let (start, mut depth) = (i, 0);
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            line += count(start, i);
        } else if ch == '"' || ((ch == 'r' || ch == 'b') && raw_string_start(&c, i).is_some()) {
            let start = i;
            i = skip_string(&c, i);
            line += count(start, i);
        } else if ch == '\'' {
            // A character literal ('x', '\n', '\u{E000}') or a lifetime ('a).
            if next == Some('\\') {
                // Quote, backslash and the escaped character, then up to the closing quote.
                i += 3;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if c.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
            }
        } else if ch.is_alphabetic() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push((Tok::Ident(c[start..i].iter().collect()), line));
        } else if ch == ':' && next == Some(':') {
            out.push((Tok::Path, line));
            i += 2;
        } else {
            if !ch.is_whitespace() {
                out.push((Tok::Punct(ch), line));
            }
            i += 1;
        }
    }
    out
}

/// At `i`, `r"`, `r#"`, `br"`, `b"`: the index of the opening quote.
fn raw_string_start(c: &[char], i: usize) -> Option<usize> {
    let prev_ident = i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_');
    if prev_ident {
        return None;
    }
    let mut j = i;
    if c[j] == 'b' {
        j += 1;
        if c.get(j) == Some(&'"') {
            return Some(j);
        }
    }
    if c.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    while c.get(j) == Some(&'#') {
        j += 1;
    }
    (c.get(j) == Some(&'"')).then_some(j)
}

/// Skips a string literal starting at `i` (plain, byte or raw); returns the index after it.
fn skip_string(c: &[char], i: usize) -> usize {
    if c[i] == '"' {
        let mut j = i + 1;
        while j < c.len() && c[j] != '"' {
            j += if c[j] == '\\' { 2 } else { 1 };
        }
        return j + 1;
    }
    let quote = raw_string_start(c, i).unwrap();
    let hashes = c[i..quote].iter().filter(|&&x| x == '#').count();
    let raw = c[i..quote].contains(&'r');
    let mut j = quote + 1;
    while j < c.len() {
        if c[j] == '\\' && !raw {
            j += 2;
            continue;
        }
        if c[j] == '"' && (0..hashes).all(|k| c.get(j + 1 + k) == Some(&'#')) {
            return j + 1 + hashes;
        }
        j += 1;
    }
    j
}

/// Every `crate::…` and `super::…` path in a file: (the module it is written in, the
/// module path it names, line).
fn references(file_module: &[String], src: &str) -> Vec<(Vec<String>, Vec<String>, usize)> {
    let toks = tokens(src);
    let mut out = Vec::new();
    // Inline modules (`mod tests { … }`): (name, brace depth inside it).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < toks.len() {
        let here = || {
            let mut m = file_module.to_vec();
            m.extend(inline.iter().map(|(n, _)| n.clone()));
            m
        };
        match &toks[i].0 {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            Tok::Ident(k) if k == "mod" => {
                if let (Some((Tok::Ident(name), _)), Some((Tok::Punct('{'), _))) =
                    (toks.get(i + 1), toks.get(i + 2))
                {
                    inline.push((name.clone(), depth + 1));
                }
            }
            Tok::Ident(k)
                if (k == "crate" || k == "super")
                    && toks.get(i + 1).map(|t| &t.0) == Some(&Tok::Path) =>
            {
                let after_path = i > 0 && toks[i - 1].0 == Tok::Path;
                if !after_path {
                    let line = toks[i].1;
                    let mut base = if k == "crate" {
                        Vec::new()
                    } else {
                        parent(&here())
                    };
                    let mut j = i + 2;
                    while let (Some((Tok::Ident(s), _)), Some((Tok::Path, _))) =
                        (toks.get(j), toks.get(j + 1))
                    {
                        if s != "super" {
                            break;
                        }
                        base = parent(&base);
                        j += 2;
                    }
                    let mut targets = Vec::new();
                    path_tree(&toks, j, base, &mut targets);
                    for t in targets {
                        out.push((here(), t, line));
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

fn parent(m: &[String]) -> Vec<String> {
    m[..m.len().saturating_sub(1)].to_vec()
}

/// Reads a path (or a `use` tree with `{…}` groups) from `toks[i]` on, below `base`;
/// pushes every module path it names. Returns the index after it.
fn path_tree(
    toks: &[(Tok, usize)],
    mut i: usize,
    mut base: Vec<String>,
    out: &mut Vec<Vec<String>>,
) -> usize {
    loop {
        match toks.get(i).map(|t| &t.0) {
            Some(Tok::Ident(s)) => {
                if s != "self" {
                    base.push(s.clone());
                }
                i += 1;
                if toks.get(i).map(|t| &t.0) == Some(&Tok::Path) {
                    i += 1;
                    continue;
                }
                out.push(base);
                return i;
            }
            Some(Tok::Punct('{')) => {
                i += 1;
                loop {
                    match toks.get(i).map(|t| &t.0) {
                        Some(Tok::Punct('}')) => return i + 1,
                        Some(Tok::Punct(',')) => i += 1,
                        None => return i,
                        _ => {
                            let before = i;
                            i = path_tree(toks, i, base.clone(), out);
                            // `as name`, `*` and other tails: skip to the next item.
                            while !matches!(
                                toks.get(i).map(|t| &t.0),
                                Some(Tok::Punct(',' | '}')) | None
                            ) {
                                i += 1;
                            }
                            if i == before {
                                i += 1;
                            }
                        }
                    }
                }
            }
            // `crate::*` or the end of the path: the module reached so far.
            _ => {
                out.push(base);
                return i;
            }
        }
    }
}

/// Every cycle of the graph, one report per strongly connected component of two or more
/// modules: its members, one closed walk through them, and every dependency between
/// them, each with where it is written.
fn cycles(g: &Graph) -> Vec<String> {
    let nodes: BTreeSet<&String> = g.keys().chain(g.values().flat_map(|o| o.keys())).collect();
    let mut found = Vec::new();
    let mut done: BTreeSet<&String> = BTreeSet::new();
    for &start in &nodes {
        if done.contains(start) {
            continue;
        }
        // The component of `start`: what it reaches that also reaches it.
        let forward = reach(g, start, false);
        let backward = reach(g, start, true);
        let comp: BTreeSet<&String> = forward.intersection(&backward).copied().collect();
        done.extend(comp.iter().copied());
        if comp.len() < 2 {
            continue;
        }
        // A shortest walk start -> … -> start inside the component.
        let mut prev: BTreeMap<&String, &String> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        let mut closing = None;
        while let Some(n) = queue.pop_front() {
            for m in g.get(n).into_iter().flat_map(|o| o.keys()) {
                if !comp.contains(m) {
                    continue;
                }
                if m == start {
                    closing = Some(n);
                    queue.clear();
                    break;
                }
                if !prev.contains_key(m) {
                    prev.insert(m, n);
                    queue.push_back(m);
                }
            }
        }
        // Back from the last step before `start` to `start`, then turned around.
        let mut walk = vec![start];
        let mut n = closing.expect("a component of two has a cycle");
        while n != start {
            walk.push(n);
            n = prev[n];
        }
        walk.push(start);
        walk.reverse();
        let steps: Vec<String> = walk
            .windows(2)
            .map(|w| format!("    {} -> {} ({})", w[0], w[1], g[w[0]][w[1]]))
            .collect();
        let members: Vec<&str> = comp.iter().map(|s| s.as_str()).collect();
        // Every edge inside the component: removing enough of them breaks it.
        let inside: Vec<String> = comp
            .iter()
            .flat_map(|&a| {
                g.get(a)
                    .into_iter()
                    .flat_map(move |o| o.iter().map(move |e| (a, e)))
            })
            .filter(|(_, (b, _))| comp.contains(b))
            .map(|(a, (b, site))| format!("    {a} -> {b} ({site})"))
            .collect();
        found.push(format!(
            "  cycle among {{{}}}, for example:\n{}\n  and every dependency inside it:\n{}",
            members.join(", "),
            steps.join("\n"),
            inside.join("\n")
        ));
    }
    found
}

/// The nodes reachable from `start` (following edges backwards if `back`), itself included.
fn reach<'g>(g: &'g Graph, start: &'g String, back: bool) -> BTreeSet<&'g String> {
    let mut seen = BTreeSet::from([start]);
    let mut stack = vec![start];
    while let Some(n) = stack.pop() {
        let next: Vec<&String> = if back {
            g.iter()
                .filter(|(_, o)| o.contains_key(n))
                .map(|(k, _)| k)
                .collect()
        } else {
            g.get(n).into_iter().flat_map(|o| o.keys()).collect()
        };
        for m in next {
            if seen.insert(m) {
                stack.push(m);
            }
        }
    }
    seen
}

mod synthetic {
    use super::*;

    fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect()
    }

    #[test]
    fn a_cycle_through_three_modules_is_found_and_named() {
        let g = graph_of(&files(&[
            ("lib.rs", "pub mod config; pub mod store; pub mod render;"),
            ("config.rs", "use crate::store::is_postgres_url;"),
            (
                "store/mod.rs",
                "pub wechat: Option<crate::render::WechatArticle>,",
            ),
            ("store/sqlite.rs", "use super::Store;"),
            ("render.rs", "use crate::{markdown, config::Publisher};"),
            (
                "markdown.rs",
                "// crate::config::Config in a comment\nfn f() { let s = \"crate::config\"; }",
            ),
        ]));
        let c = cycles(&g);
        assert_eq!(c.len(), 1, "{c:?}");
        assert!(c[0].contains("{config, render, store}"), "{}", c[0]);
        assert!(
            c[0].contains("config -> store (src/config.rs:1)"),
            "{}",
            c[0]
        );
        assert!(
            c[0].contains("render -> config (src/render.rs:1)"),
            "{}",
            c[0]
        );
        // Comments and strings are not references; `super` inside store stays in store.
        assert!(!has_edge(&g, "markdown", "config"));
        assert!(!g.get("store").unwrap().contains_key("store"));
    }

    #[test]
    fn submodules_of_a_split_module_are_nodes_and_super_reaches_them() {
        let g = graph_of(&files(&[
            (
                "http/mod.rs",
                "pub mod admin; pub mod dashboard; pub struct Ctx;",
            ),
            (
                "http/admin.rs",
                "use super::{dashboard::page, Ctx};\nmod tests { use super::*; }",
            ),
            (
                "http/dashboard.rs",
                "fn f() { super::super::http::admin::x(); }",
            ),
        ]));
        assert!(has_edge(&g, "http::admin", "http::dashboard"));
        assert!(has_edge(&g, "http::admin", "http"));
        assert!(has_edge(&g, "http::dashboard", "http::admin"));
        let c = cycles(&g);
        assert_eq!(c.len(), 1, "{c:?}");
        assert!(c[0].contains("{http::admin, http::dashboard}"), "{}", c[0]);
    }

    #[test]
    fn a_graph_without_cycles_passes() {
        let g = graph_of(&files(&[
            ("config.rs", "use crate::db_url::redact_url; use crate::domain::ExpiredLease;"),
            ("store/mod.rs", "use crate::{db_url, domain::{self, ExpiredLease}};"),
            ("render.rs", "use crate::config::Publisher; let x = 'a'; fn g<'a>(s: &'a str) {}\nconst Q: char = '\\''; const O: char = '{';"),
            ("db_url.rs", "let r = r#\"crate::store\"#;"),
        ]));
        assert!(has_edge(&g, "store", "domain") && has_edge(&g, "render", "config"));
        assert!(!has_edge(&g, "db_url", "store"));
        assert_eq!(cycles(&g), Vec::<String>::new());
    }
}
