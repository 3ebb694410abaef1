//! The config's one duration parser and one byte-size parser, used by every
//! section.
//!
//! Durations are humantime strings (`500ms`, `2s`, `1h 30m`), read by
//! [`parse_duration`]; byte sizes are an integer or a number with a unit
//! (`64KiB`, `10MiB`), read by [`RawByteSize::bytes`].

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::validate::Errors;

/// Parses a humantime duration (`500ms`, `2s`, `5m`, `1h 30m`); surrounding
/// whitespace is ignored. Zero is accepted here: the caller decides what it means.
///
/// # Errors
/// humantime's description of what is wrong.
pub fn parse_duration(s: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(s.trim())
}

/// A duration key deserialized at parse time (as `humantime_serde` did: a
/// string that is not a duration is a parse error, `expected a duration`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                parse_duration(v)
                    .map(HumanDuration)
                    .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }
        d.deserialize_str(V)
    }
}

/// The value of an optional [`HumanDuration`] key, or `default`.
pub(super) fn or_default(v: Option<&Spanned<HumanDuration>>, default: Duration) -> Duration {
    v.map_or(default, |d| d.value.0)
}

/// An optional [`HumanDuration`] key where zero has no meaning (a timeout that
/// fires at once): zero is an error naming the key's line and column.
pub(super) fn nonzero_or_default(
    v: Option<&Spanned<HumanDuration>>,
    default: Duration,
    key: String,
    errs: &mut Errors,
) -> Duration {
    match v {
        Some(d) if d.value.0.is_zero() => {
            errs.at(Some(&d.referenced), key, "must be more than 0s");
            default
        }
        v => or_default(v, default),
    }
}

/// A duration key written as a string, checked at validation (`example` is
/// shown in the error, e.g. `50ms or 10s`); zero is an error.
pub(super) fn positive(
    d: &Spanned<String>,
    key: String,
    example: &str,
    errs: &mut Errors,
) -> Option<Duration> {
    match parse_duration(&d.value) {
        Ok(v) if !v.is_zero() => Some(v),
        Ok(_) => {
            errs.at(Some(&d.referenced), key, "must be greater than 0");
            None
        }
        Err(e) => {
            errs.at(
                Some(&d.referenced),
                key,
                format!("{:?} is not a duration such as {example}: {e}", d.value),
            );
            None
        }
    }
}

/// A byte size: an integer or a string with a unit (`10MiB`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawByteSize {
    /// Bytes.
    Bytes(u64),
    /// `64KiB`, `10MiB`, `1GB`…
    Text(String),
}

impl RawByteSize {
    /// The size in bytes (`B`, `KB`, `MB`, `GB` are powers of 1000; `KiB`,
    /// `MiB`, `GiB` of 1024).
    ///
    /// # Errors
    /// A message saying what is wrong.
    pub fn bytes(&self) -> Result<u64, String> {
        match self {
            RawByteSize::Bytes(n) => Ok(*n),
            RawByteSize::Text(t) => crate::limits::parse_byte_size(t),
        }
    }
}
