//! Validation of a route's `rewrite`: a `prefix` replacing the matched
//! `path_prefix`, or a `regex` and its `replace`.

use http::uri::PathAndQuery;
use serde_saphyr::Spanned;

use super::content::RawRewrite;
use super::validate::Errors;
use super::RawRoute;
use crate::content::rewrite::Rewrite;

/// Validates a route's `rewrite` (`key` = `routes[i].rewrite`) of route `r`.
pub(super) fn rewrite(
    rw: &Spanned<RawRewrite>,
    r: &RawRoute,
    key: &str,
    errs: &mut Errors,
) -> Option<Rewrite> {
    let v = &rw.value;
    match (&v.prefix, &v.regex, &v.replace) {
        (Some(p), None, None) => prefix(p, r, key, errs),
        (None, Some(re), Some(rep)) => regex(re, rep, key, errs),
        (None, Some(re), None) => {
            errs.at(
                Some(&re.referenced),
                format!("{key}.replace"),
                "regex needs replace",
            );
            None
        }
        (None, None, Some(rep)) => {
            errs.at(
                Some(&rep.referenced),
                format!("{key}.regex"),
                "replace needs regex",
            );
            None
        }
        (None, None, None) => {
            errs.at(
                Some(&rw.referenced),
                key,
                "needs prefix, or regex and replace",
            );
            None
        }
        (Some(p), _, _) => {
            errs.at(
                Some(&p.referenced),
                format!("{key}.prefix"),
                "use prefix, or regex and replace, not both",
            );
            None
        }
    }
}

/// `rewrite.prefix`, replacing the route's `match.path_prefix`.
fn prefix(p: &Spanned<String>, r: &RawRoute, key: &str, errs: &mut Errors) -> Option<Rewrite> {
    if r.matchers.path.is_some() {
        errs.at(
            Some(&p.referenced),
            format!("{key}.prefix"),
            "replaces match.path_prefix: not usable with match.path (use regex)",
        );
        return None;
    }
    if !p.value.starts_with('/')
        || PathAndQuery::try_from(p.value.as_str()).is_err()
        || p.value.contains(['?', '#'])
    {
        errs.at(
            Some(&p.referenced),
            format!("{key}.prefix"),
            format!("{:?} is not a path starting with /", p.value),
        );
        return None;
    }
    let from = r.matchers.path_prefix.as_ref().map_or(String::new(), |pp| {
        crate::route::path::normalize(&pp.value)
            .trim_end_matches('/')
            .to_string()
    });
    Some(Rewrite::Prefix {
        from: from.into(),
        to: p.value.as_str().into(),
    })
}

/// `rewrite.regex` and `rewrite.replace` (whose `$N`/`${name}` must exist).
fn regex(
    re: &Spanned<String>,
    rep: &Spanned<String>,
    key: &str,
    errs: &mut Errors,
) -> Option<Rewrite> {
    let regex = match regex::RegexBuilder::new(&re.value)
        .size_limit(1 << 20)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            errs.at(
                Some(&re.referenced),
                format!("{key}.regex"),
                format!("not a valid regular expression: {e}"),
            );
            return None;
        }
    };
    if let Some(bad) = missing_group(&regex, &rep.value) {
        errs.at(
            Some(&rep.referenced),
            format!("{key}.replace"),
            format!("refers to group {bad:?}, which the regex does not have"),
        );
        return None;
    }
    Some(Rewrite::Regex {
        regex,
        replace: rep.value.as_str().into(),
    })
}

/// The first `$N` / `${name}` of `replace` that `regex` has no group for.
fn missing_group(regex: &regex::Regex, replace: &str) -> Option<String> {
    let names: Vec<&str> = regex.capture_names().flatten().collect();
    let groups = regex.captures_len();
    let b = replace.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            i += 1;
            continue;
        }
        if b.get(i + 1) == Some(&b'$') {
            i += 2;
            continue;
        }
        let (name, next) = if b.get(i + 1) == Some(&b'{') {
            match replace[i + 2..].find('}') {
                Some(end) => (&replace[i + 2..i + 2 + end], i + 3 + end),
                None => return None,
            }
        } else {
            let len = replace[i + 1..]
                .bytes()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == b'_')
                .count();
            (&replace[i + 1..i + 1 + len], i + 1 + len)
        };
        i = next;
        if name.is_empty() {
            continue;
        }
        let known = match name.parse::<usize>() {
            Ok(n) => n < groups,
            Err(_) => names.contains(&name),
        };
        if !known {
            return Some(name.to_string());
        }
    }
    None
}
