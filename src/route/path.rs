//! Request path normalization for matching (RFC 3986 §6.2.2 and §5.2.4).
//!
//! Routes match the normalized path; the original is forwarded untouched.
//! Normalizing first means `/profile/../repositories`, `/%70rofile` and
//! `//profile` reach the same route as the path the upstream will see after
//! its own normalization, so a route table cannot be bypassed by encoding.

use std::borrow::Cow;

use crate::http_syntax::hex_digit;

/// Returns `path` normalized for matching:
/// - percent-encoded unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded
///   and other escapes upper-cased (RFC 3986 §6.2.2.1–2); `%2F` stays encoded,
///   so it never becomes a separator; a stray `%` becomes `%25`, so the result
///   is a fixed point (normalizing it again changes nothing);
/// - runs of `/` are merged (as nginx's `merge_slashes on`);
/// - `.` and `..` segments are removed (RFC 3986 §5.2.4); `..` never climbs above `/`.
///
/// Allocates only when the path needs a change.
pub fn normalize(path: &str) -> Cow<'_, str> {
    if is_normal(path.as_bytes()) {
        return Cow::Borrowed(path);
    }
    let decoded = decode_unreserved(path);
    Cow::Owned(remove_dot_segments(&decoded))
}

/// True when the path has no escape, no empty segment and no dot segment.
fn is_normal(p: &[u8]) -> bool {
    if p.first() != Some(&b'/') {
        return false;
    }
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            b'%' => return false,
            b'/' => {
                let rest = &p[i + 1..];
                if rest.first() == Some(&b'/')
                    || rest.starts_with(b"./")
                    || rest == b"."
                    || rest.starts_with(b"../")
                    || rest == b".."
                {
                    return false;
                }
            }
            _ => {}
        }
        i += 1;
    }
    true
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn decode_unreserved(path: &str) -> String {
    let p = path.as_bytes();
    let mut out = String::with_capacity(p.len());
    let mut i = 0;
    while i < p.len() {
        if p[i] == b'%' && i + 2 < p.len() {
            if let (Some(h), Some(l)) = (hex_digit(p[i + 1]), hex_digit(p[i + 2])) {
                let b = (h << 4) | l;
                if is_unreserved(b) {
                    out.push(b as char);
                } else {
                    out.push('%');
                    out.push(p[i + 1].to_ascii_uppercase() as char);
                    out.push(p[i + 2].to_ascii_uppercase() as char);
                }
                i += 3;
                continue;
            }
        }
        if p[i] == b'%' {
            // A stray `%` (not an escape) is written `%25`: otherwise a
            // decoded character could complete an escape with it (`/%%610`
            // would become `/%a0`, another path on a second pass).
            out.push_str("%25");
            i += 1;
            continue;
        }
        // Copy one UTF-8 character (paths from hyper are ASCII, but be safe).
        let ch_len = utf8_len(p[i]);
        let end = (i + ch_len).min(p.len());
        out.push_str(path.get(i..end).unwrap_or("\u{FFFD}"));
        i = end;
    }
    out
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7F => 1,
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    }
}

fn remove_dot_segments(p: &str) -> String {
    let trailing =
        p.ends_with('/') || p.ends_with("/.") || p.ends_with("/..") || p == "." || p == "..";
    let mut segments: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(p.len() + 1);
    for seg in &segments {
        out.push('/');
        out.push_str(seg);
    }
    if trailing || out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn normal_paths_are_borrowed() {
        for p in ["/", "/a", "/a/b/", "/a.b/c..d/.e", "/a/b.", "/..a"] {
            assert!(matches!(normalize(p), std::borrow::Cow::Borrowed(_)), "{p}");
            assert_eq!(normalize(p), p);
        }
    }

    #[test]
    fn dot_segments_and_escapes() {
        let cases = [
            ("/profile/../repositories", "/repositories"),
            ("/%70rofile", "/profile"),
            ("/%2e%2e/repositories", "/repositories"),
            ("/profile/%2E%2E/repositories/1", "/repositories/1"),
            ("//profile", "/profile"),
            ("/a/./b/", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/../../etc", "/etc"),
            ("/a%2fb", "/a%2Fb"),
            ("/a%2Fb/../c", "/c"),
            ("/%zz", "/%25zz"),
            ("/%", "/%25"),
            ("/%%610", "/%25a0"),
            ("/a%7e", "/a~"),
            ("/.", "/"),
            ("/..", "/"),
            ("/%41", "/A"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input), want, "{input}");
        }
    }
}
