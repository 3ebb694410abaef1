//! The layer diagram at the top of `src/lib.rs` is the rule: a top-level
//! module of `src/` may name (`crate::<module>`, also inside a
//! `use crate::{a, b::c}` group and in doc links) only modules on lower lines
//! of the diagram. The order is parsed from `src/lib.rs` itself, so the
//! diagram and this test cannot drift apart.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Edges that `config` is part of, owned by the config split (issue 18,
/// point 3): allowed until the config split lands; the coordinator removes
/// this list after merging it.
const ALLOWED_UNTIL_CONFIG_SPLIT: &[(&str, &str)] = &[
    ("config", "tls"),
    ("config", "acme"),
    ("balancer", "config"),
    ("affinity", "config"),
    ("cache", "config"),
];

/// Edges of point 1 that are not cut yet (each is a known upward import;
/// remove an entry when its edge is gone: the test fails on stale entries).
const NOT_CUT_YET: &[(&str, &str)] = &[("balancer", "upstream")];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The modules of the diagram in `src/lib.rs`, bottom first.
fn order() -> Vec<String> {
    let lib = fs::read_to_string(src().join("lib.rs")).unwrap();
    let start = lib
        .find("//! # Layers")
        .expect("src/lib.rs has a `# Layers` section");
    let mut rows = Vec::new();
    let mut in_block = false;
    for line in lib[start..].lines() {
        let Some(doc) = line.strip_prefix("//!") else {
            break;
        };
        let doc = doc.trim();
        if doc.starts_with("```") {
            if in_block {
                break;
            }
            in_block = true;
            continue;
        }
        let mut words = doc.split_whitespace();
        if let (true, Some(layer), Some(module)) = (in_block, words.next(), words.next()) {
            if layer.parse::<u32>().is_ok() {
                rows.push(module.trim_end_matches(".rs").to_string());
            }
        }
    }
    assert!(
        !rows.is_empty(),
        "no rows in the layer diagram of src/lib.rs"
    );
    rows.reverse();
    rows
}

/// Top-level modules of `src/` (files and directories, without lib/main).
fn top_modules() -> BTreeSet<String> {
    fs::read_dir(src())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            if p.is_dir() {
                Some(name)
            } else {
                name.strip_suffix(".rs").map(str::to_string)
            }
        })
        .filter(|n| n != "lib" && n != "main")
        .collect()
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first path segment of every item of a `{...}` group (`s` starts
/// after the `{`), nested groups skipped.
fn group_heads(s: &str, out: &mut Vec<String>) {
    let mut depth = 0;
    let mut item_start = true;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return,
            '}' => depth -= 1,
            ',' if depth == 0 => item_start = true,
            c if item_start && depth == 0 && !c.is_whitespace() => {
                item_start = false;
                out.push(ident(&s[i..]).to_string());
            }
            _ => {}
        }
    }
}

/// Every module named after `crate::` in `text`.
fn crate_refs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            group_heads(group, &mut out);
        } else {
            out.push(ident(rest).to_string());
        }
    }
    out
}

/// `(from, to) → files` for every import between two top-level modules.
fn edges(tops: &BTreeSet<String>) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut files = Vec::new();
    rs_files(&src(), &mut files);
    let mut edges: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f
            .strip_prefix(src())
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let from = rel
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_string();
        if !tops.contains(&from) {
            continue;
        }
        for to in crate_refs(&fs::read_to_string(&f).unwrap()) {
            if to != from && tops.contains(&to) {
                edges
                    .entry((from.clone(), to))
                    .or_default()
                    .insert(rel.clone());
            }
        }
    }
    edges
}

#[test]
fn every_top_level_module_is_in_the_diagram_once() {
    let order = order();
    let listed: BTreeSet<String> = order.iter().cloned().collect();
    assert_eq!(
        listed.len(),
        order.len(),
        "a module is listed twice: {order:?}"
    );
    assert_eq!(
        listed,
        top_modules(),
        "the diagram in src/lib.rs lists other modules than src/ holds"
    );
}

#[test]
fn modules_import_only_lower_layers() {
    let order = order();
    let rank: BTreeMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    let allowed: BTreeSet<(&str, &str)> = ALLOWED_UNTIL_CONFIG_SPLIT
        .iter()
        .chain(NOT_CUT_YET)
        .copied()
        .collect();
    let mut bad = Vec::new();
    let mut seen = BTreeSet::new();
    for ((from, to), files) in edges(&top_modules()) {
        if rank[to.as_str()] < rank[from.as_str()] {
            continue;
        }
        if allowed.contains(&(from.as_str(), to.as_str())) {
            seen.insert((from, to));
            continue;
        }
        let files: Vec<_> = files.into_iter().collect();
        bad.push(format!("{from} -> {to} (above it) in {}", files.join(", ")));
    }
    assert!(
        bad.is_empty(),
        "imports that point up the layer diagram of src/lib.rs:\n{}",
        bad.join("\n")
    );
    let stale: Vec<_> = NOT_CUT_YET
        .iter()
        .filter(|(a, b)| !seen.contains(&(a.to_string(), b.to_string())))
        .collect();
    assert!(
        stale.is_empty(),
        "NOT_CUT_YET lists edges that are gone: {stale:?}"
    );
}

#[test]
fn crate_refs_reads_groups() {
    let refs = crate_refs("use crate::{a, b::c, d::{e, f}};\n[`x`](crate::g::H) crate::h");
    assert_eq!(refs, ["a", "b", "d", "g", "h"]);
}
