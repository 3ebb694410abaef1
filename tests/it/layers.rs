//! The layer diagram at the top of `src/lib.rs` is the rule: a top-level
//! module of `src/` may name (`crate::<module>`, also inside a
//! `use crate::{a, b::c}` group and in doc links) only modules on lower lines
//! of the diagram. The order is parsed from `src/lib.rs` itself, so the
//! diagram and this test cannot drift apart.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

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

/// `text` without its inline test module: a `#[cfg(test)] mod … {` block
/// is the last item of a file (checked), and test fixtures may use any layer
/// (a balancer test drives real `upstream::Server`s). The rule is for the
/// code that ships.
fn shipped(text: &str) -> &str {
    for head in ["#[cfg(test)]\nmod ", "#[cfg(test)]\npub(crate) mod "] {
        if let Some(at) = text.find(head) {
            let block = &text[at..];
            let end = block.find("\n}\n").map_or(block.len(), |e| e + 3);
            assert!(
                block[end..].trim().is_empty(),
                "an inline test module that is not the last item of its file"
            );
            return &text[..at];
        }
    }
    text
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
        let text = fs::read_to_string(&f).unwrap();
        for to in crate_refs(shipped(&text)) {
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
    let mut bad = Vec::new();
    for ((from, to), files) in edges(&top_modules()) {
        if rank[to.as_str()] < rank[from.as_str()] {
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
}

#[test]
fn crate_refs_reads_groups() {
    let refs = crate_refs("use crate::{a, b::c, d::{e, f}};\n[`x`](crate::g::H) crate::h");
    assert_eq!(refs, ["a", "b", "d", "g", "h"]);
}
