//! `docs/configuration.md` names every key the config parser accepts.
//!
//! The keys are read from the source of the raw serde structs
//! (`src/config/*.rs`, every `struct Raw…`): each field is a key, spelled as
//! its `#[serde(rename = "...")]` says when it has one. Each must appear in
//! the reference backticked (`` `key` ``). A new key without documentation
//! fails this test.

use std::path::Path;

/// One accepted key: the struct it belongs to and its YAML name.
#[derive(Debug)]
struct Key {
    file: String,
    structure: String,
    name: String,
}

/// The fields of every `struct Raw…` in `source`, with their serde names.
/// Also returns the structs that lack `deny_unknown_fields`.
fn raw_keys(file: &str, source: &str) -> (Vec<Key>, Vec<String>) {
    let mut keys = Vec::new();
    let mut lenient = Vec::new();
    // Attribute lines seen since the last item (struct or field).
    let mut attrs: Vec<&str> = Vec::new();
    let mut current: Option<String> = None;
    for line in source.lines() {
        let t = line.trim();
        if t.starts_with("//") || t.is_empty() {
            continue;
        }
        if t.starts_with("#[") {
            attrs.push(t);
            continue;
        }
        match &current {
            None => {
                let decl = t.strip_prefix("pub ").unwrap_or(t);
                let decl = decl.strip_prefix("pub(crate) ").unwrap_or(decl);
                if let Some(rest) = decl.strip_prefix("struct Raw") {
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    let name = format!("Raw{name}");
                    if !attrs.iter().any(|a| a.contains("deny_unknown_fields")) {
                        lenient.push(format!("{file}: {name}"));
                    }
                    if t.ends_with('{') {
                        current = Some(name);
                    }
                }
            }
            Some(structure) => {
                if t.starts_with('}') {
                    current = None;
                } else if let Some((field, _)) = t.split_once(':') {
                    let field = field.trim();
                    let field = field.strip_prefix("pub ").unwrap_or(field).trim();
                    let field = field.strip_prefix("r#").unwrap_or(field);
                    if !field.is_empty()
                        && field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    {
                        let name = attrs
                            .iter()
                            .find_map(|a| rename(a))
                            .unwrap_or_else(|| field.to_string());
                        keys.push(Key {
                            file: file.to_string(),
                            structure: structure.clone(),
                            name,
                        });
                    }
                }
            }
        }
        attrs.clear();
    }
    (keys, lenient)
}

/// The `rename = "..."` of a `#[serde(...)]` attribute.
fn rename(attr: &str) -> Option<String> {
    if !attr.starts_with("#[serde(") {
        return None;
    }
    let at = attr.find("rename")?;
    let rest = attr[at + "rename".len()..].trim_start().strip_prefix('=')?;
    let rest = rest.trim_start().strip_prefix('"')?;
    Some(rest.split('"').next()?.to_string())
}

fn all_keys() -> (Vec<Key>, Vec<String>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("src/config")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.sort();
    let mut keys = Vec::new();
    let mut lenient = Vec::new();
    for path in files {
        let source = std::fs::read_to_string(&path).expect("read source");
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let (k, l) = raw_keys(&name, &source);
        keys.extend(k);
        lenient.extend(l);
    }
    (keys, lenient)
}

#[test]
fn every_config_key_is_documented() {
    let (keys, _) = all_keys();
    // The scan itself must work: known keys from several files, renames applied.
    for expected in [
        "listeners",
        "match",
        "type",
        "max_connections_per_ip",
        "public_key_file",
        "on_error",
        "token_file",
    ] {
        assert!(
            keys.iter().any(|k| k.name == expected),
            "the source scan missed `{expected}`; found {keys:?}"
        );
    }
    assert!(
        !keys
            .iter()
            .any(|k| k.name == "matchers" || k.name == "kind"),
        "serde renames were not applied"
    );
    assert!(keys.len() >= 90, "only {} keys found", keys.len());

    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md");
    let doc = std::fs::read_to_string(&doc_path).expect("docs/configuration.md");
    let missing: Vec<String> = keys
        .iter()
        .filter(|k| !doc.contains(&format!("`{}`", k.name)))
        .map(|k| format!("`{}` ({} in src/config/{})", k.name, k.structure, k.file))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/configuration.md does not mention these accepted keys:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn every_raw_struct_denies_unknown_keys() {
    // The reference promises that unknown keys are errors.
    let (_, lenient) = all_keys();
    assert!(
        lenient.is_empty(),
        "raw config structs without #[serde(deny_unknown_fields)]: {lenient:?}"
    );
}

/// The first ```yaml block of `docs/configuration.md`: the skeleton.
fn skeleton(doc: &str) -> &str {
    let start = doc.find("```yaml\n").expect("a yaml block") + "```yaml\n".len();
    let len = doc[start..].find("```").expect("the end of the yaml block");
    &doc[start..start + len]
}

#[test]
fn the_skeleton_parses() {
    // Syntax and types only (no files, secrets or DNS): every key in the
    // skeleton is one the parser accepts.
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md");
    let doc = std::fs::read_to_string(&doc_path).expect("docs/configuration.md");
    if let Err(e) = weir::config::parse(skeleton(&doc), Path::new("skeleton.yaml")) {
        panic!("the skeleton of docs/configuration.md does not parse:\n{e}");
    }
}

/// The Markdown files a user reads: the README, BENCHMARKS.md, docs/ and
/// the examples' and benchmarks' notes.
fn markdown_files() -> Vec<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md"), root.join("BENCHMARKS.md")];
    for dir in ["docs", "examples", "examples/ha", "bench"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in entries.flatten() {
            if e.path().extension().is_some_and(|x| x == "md") {
                files.push(e.path());
            }
        }
    }
    files
}

/// The README and docs refer only to files in the repository: every
/// relative Markdown link and every repository path they name
/// (`src/…`, `tests/…`, `docs/…`, `bench/…`, `examples/…`, `certs-dev/…`)
/// exists. Placeholders (`NAME`, `*`, `{a,b}`) are skipped.
#[test]
fn docs_refer_only_to_files_in_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path_re = regex::Regex::new(
        r"(?:^|[^\w/.-])((?:src|tests|docs|bench|benches|examples|certs-dev|vendor|\.ci)/[\w./-]*\w)([.{*]?)",
    )
    .unwrap();
    let link_re = regex::Regex::new(r"\]\(([^)#\s]+)(?:#[^)]*)?\)").unwrap();
    let mut missing = Vec::new();
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let rel = file.strip_prefix(root).unwrap().display().to_string();
        for c in path_re.captures_iter(&text) {
            let p = &c[1];
            let after = &c[2];
            if after == "{" || after == "*" || p.contains("NAME") || p.ends_with('/') {
                continue;
            }
            if !root.join(p).exists() && !file.parent().unwrap().join(p).exists() {
                missing.push(format!("{rel}: {p}"));
            }
        }
        for c in link_re.captures_iter(&text) {
            let target = &c[1];
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            if !file.parent().unwrap().join(target).exists() {
                missing.push(format!("{rel}: link {target}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs name files that are not in the repository:\n{}",
        missing.join("\n")
    );
}
