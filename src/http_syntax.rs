//! HTTP syntax read on every request, in one place: RFC 9110 §5.6.2 token
//! characters and hex digits (percent-encoding, RFC 3986 §2.1).
//!
//! A leaf module: it imports nothing from the crate, so every layer may use
//! it. Nothing here allocates.

/// `TCHAR[b]`: byte `b` is an RFC 9110 §5.6.2 `tchar` (`ALPHA`, `DIGIT` and
/// `` !#$%&'*+-.^_`|~ ``).
static TCHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let others = b"!#$%&'*+-.^_`|~";
    let mut i = 0;
    while i < others.len() {
        table[others[i] as usize] = true;
        i += 1;
    }
    table
};

/// True when `b` is an RFC 9110 §5.6.2 token character (`tchar`): a token
/// (a header or cookie name, a `Connection` option) is one or more of them.
#[inline]
pub fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

/// The value of one hex digit (`0-9`, `a-f`, `A-F`), or `None`.
#[inline]
pub fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tchar_table_is_rfc_9110() {
        for b in 0..=255u8 {
            let want = b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            assert_eq!(is_tchar(b), want, "{b:#x}");
        }
    }

    #[test]
    fn hex_digits() {
        for (i, c) in b"0123456789abcdef".iter().enumerate() {
            assert_eq!(hex_digit(*c), Some(i as u8));
            assert_eq!(hex_digit(c.to_ascii_uppercase()), Some(i as u8));
        }
        for c in [b'g', b'G', b'/', b':', b'@', b'`', b' ', 0x80, 0xff] {
            assert_eq!(hex_digit(c), None, "{c:#x}");
        }
    }
}
