//! Validation of a route's `compression`: codings, minimum size, media
//! types and levels.

use serde_saphyr::Spanned;

use super::content::{RawCompression, RawLevels};
use super::validate::Errors;
use crate::content::compress::{Compression, Encoding, Levels, TypeMatch};

/// Validates a route's `compression` (`key` = `routes[i].compression`).
pub(super) fn compression(
    raw: &Spanned<RawCompression>,
    key: &str,
    errs: &mut Errors,
) -> Compression {
    let mut out = Compression::default();
    let v = &raw.value;
    if let Some(list) = &v.algorithms {
        let akey = format!("{key}.algorithms");
        if list.value.is_empty() {
            errs.at(
                Some(&list.referenced),
                &akey,
                "must name at least one of zstd, br, gzip",
            );
        }
        let mut algorithms = Vec::new();
        for (j, name) in list.value.iter().enumerate() {
            match Encoding::from_name(&name.to_ascii_lowercase()) {
                Some(e) if algorithms.contains(&e) => errs.at(
                    Some(&list.referenced),
                    format!("{akey}[{j}]"),
                    format!("{name} is listed twice"),
                ),
                Some(e) => algorithms.push(e),
                None => errs.at(
                    Some(&list.referenced),
                    format!("{akey}[{j}]"),
                    format!("unknown algorithm {name:?}: zstd, br or gzip"),
                ),
            }
        }
        out.algorithms = algorithms;
    }
    if let Some(m) = &v.min_size {
        match m.value.bytes() {
            Ok(n) => out.min_size = n,
            Err(e) => errs.at(Some(&m.referenced), format!("{key}.min_size"), e),
        }
    }
    if let Some(list) = &v.types {
        let tkey = format!("{key}.types");
        if list.value.is_empty() {
            errs.at(
                Some(&list.referenced),
                &tkey,
                "must name at least one media type",
            );
        }
        out.types = Vec::new();
        for (j, t) in list.value.iter().enumerate() {
            match TypeMatch::parse(t) {
                Ok(m) => out.types.push(m),
                Err(e) => errs.at(Some(&list.referenced), format!("{tkey}[{j}]"), e),
            }
        }
    }
    if let Some(l) = &v.levels {
        out.levels = levels(&l.value, &format!("{key}.levels"), errs);
    }
    out
}

fn levels(raw: &RawLevels, key: &str, errs: &mut Errors) -> Levels {
    let mut out = Levels::default();
    if let Some(z) = &raw.zstd {
        if (1..=22).contains(&z.value) {
            out.zstd = z.value;
        } else {
            errs.at(
                Some(&z.referenced),
                format!("{key}.zstd"),
                "must be 1 to 22",
            );
        }
    }
    if let Some(b) = &raw.br {
        if b.value <= 11 {
            out.br = b.value;
        } else {
            errs.at(Some(&b.referenced), format!("{key}.br"), "must be 0 to 11");
        }
    }
    if let Some(g) = &raw.gzip {
        if (1..=9).contains(&g.value) {
            out.gzip = g.value;
        } else {
            errs.at(Some(&g.referenced), format!("{key}.gzip"), "must be 1 to 9");
        }
    }
    out
}
