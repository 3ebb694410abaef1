//! Validation of `groups.*.health_check` and `groups.*.passive`.

use std::time::Duration;

use http::uri::PathAndQuery;
use http::{HeaderValue, Method};

use super::validate::Errors;
use super::{RawHealthCheck, RawPassive, RawStatus, RawStatuses, Spanned};
use crate::health::{GrpcProbe, HealthCheck, HttpProbe, PassiveConfig, ProbeKind, StatusMatch};

/// Default time between probe rounds.
pub const DEFAULT_HC_INTERVAL: Duration = Duration::from_secs(5);
/// Default probe timeout.
pub const DEFAULT_HC_TIMEOUT: Duration = Duration::from_secs(2);
/// Default consecutive passes to mark a server up (HAProxy `rise 2`).
pub const DEFAULT_HC_HEALTHY_THRESHOLD: u32 = 2;
/// Default consecutive failures to mark a server down (HAProxy `fall 3`).
pub const DEFAULT_HC_UNHEALTHY_THRESHOLD: u32 = 3;
/// Default probe path.
pub const DEFAULT_HC_PATH: &str = "/";
/// Default passing statuses (HAProxy: 2xx and 3xx).
pub const DEFAULT_HC_EXPECTED_STATUS: (u16, u16) = (200, 399);
/// Largest threshold accepted.
pub const MAX_THRESHOLD: u32 = 100;
/// Default consecutive failed requests that eject a server (Envoy's 5).
pub const DEFAULT_PASSIVE_FAILURES: u32 = 5;
/// Default first ejection time (Envoy's `base_ejection_time` 30s).
pub const DEFAULT_PASSIVE_EJECTION: Duration = Duration::from_secs(30);
/// Default cap of the ejection time (Envoy's `max_ejection_time` 300s).
pub const DEFAULT_PASSIVE_MAX_EJECTION: Duration = Duration::from_secs(300);

fn duration(
    v: &Option<Spanned<String>>,
    default: Duration,
    key: String,
    errs: &mut Errors,
) -> Duration {
    let Some(v) = v else { return default };
    super::units::positive(v, key, "2s or 500ms", errs).unwrap_or(default)
}

fn threshold(v: &Option<Spanned<u32>>, default: u32, key: String, errs: &mut Errors) -> u32 {
    match v {
        None => default,
        Some(t) if (1..=MAX_THRESHOLD).contains(&t.value) => t.value,
        Some(t) => {
            errs.at(
                Some(&t.referenced),
                key,
                format!("must be between 1 and {MAX_THRESHOLD}"),
            );
            default
        }
    }
}

/// Validates `health_check` of the group at `key` (`groups.NAME`).
pub(super) fn health_check(
    raw: &RawHealthCheck,
    key: &str,
    errs: &mut Errors,
) -> Option<HealthCheck> {
    let key = format!("{key}.health_check");
    let before = errs.list.len();
    let interval = duration(
        &raw.interval,
        DEFAULT_HC_INTERVAL,
        format!("{key}.interval"),
        errs,
    );
    let timeout = duration(
        &raw.timeout,
        DEFAULT_HC_TIMEOUT,
        format!("{key}.timeout"),
        errs,
    );
    let healthy_threshold = threshold(
        &raw.healthy_threshold,
        DEFAULT_HC_HEALTHY_THRESHOLD,
        format!("{key}.healthy_threshold"),
        errs,
    );
    let unhealthy_threshold = threshold(
        &raw.unhealthy_threshold,
        DEFAULT_HC_UNHEALTHY_THRESHOLD,
        format!("{key}.unhealthy_threshold"),
        errs,
    );
    let kind = probe_kind(raw, &key, errs);
    if errs.list.len() > before {
        return None;
    }
    Some(HealthCheck {
        kind,
        interval,
        timeout,
        healthy_threshold,
        unhealthy_threshold,
    })
}

/// `type` and the keys of that type (an http key on a tcp check is an error).
fn probe_kind(raw: &RawHealthCheck, key: &str, errs: &mut Errors) -> ProbeKind {
    let kind_name = match &raw.kind {
        None => "http",
        Some(k) => match k.value.as_str() {
            "http" => "http",
            "tcp" => "tcp",
            "grpc" => "grpc",
            other => {
                errs.at(
                    Some(&k.referenced),
                    format!("{key}.type"),
                    format!("unknown type {other:?}; expected http, tcp or grpc"),
                );
                "http"
            }
        },
    };
    if kind_name != "grpc" {
        if let Some(s) = &raw.service {
            errs.at(
                Some(&s.referenced),
                format!("{key}.service"),
                "only for type grpc",
            );
        }
    }
    if kind_name == "http" {
        ProbeKind::Http(http_probe(raw, key, errs))
    } else {
        let http_only = [
            ("path", raw.path.as_ref().map(|v| &v.referenced)),
            ("method", raw.method.as_ref().map(|v| &v.referenced)),
            ("host", raw.host.as_ref().map(|v| &v.referenced)),
            (
                "expected_status",
                raw.expected_status.as_ref().map(|v| &v.referenced),
            ),
        ];
        let why = if kind_name == "tcp" {
            "only for type http (a tcp check only connects)"
        } else {
            "only for type http (a grpc check calls grpc.health.v1.Health/Check)"
        };
        for (name, loc) in http_only {
            if let Some(loc) = loc {
                errs.at(Some(loc), format!("{key}.{name}"), why);
            }
        }
        if kind_name == "tcp" {
            ProbeKind::Tcp
        } else {
            ProbeKind::Grpc(GrpcProbe {
                service: raw
                    .service
                    .as_ref()
                    .map(|s| s.value.clone())
                    .unwrap_or_default(),
            })
        }
    }
}

fn http_probe(raw: &RawHealthCheck, key: &str, errs: &mut Errors) -> HttpProbe {
    let path = match &raw.path {
        None => PathAndQuery::from_static(DEFAULT_HC_PATH),
        Some(p) => match p.value.parse::<PathAndQuery>() {
            Ok(pq) if p.value.starts_with('/') => pq,
            _ => {
                errs.at(
                    Some(&p.referenced),
                    format!("{key}.path"),
                    format!("{:?} is not a path starting with /", p.value),
                );
                PathAndQuery::from_static(DEFAULT_HC_PATH)
            }
        },
    };
    let method = match &raw.method {
        None => Method::GET,
        Some(m) => match m.value.to_ascii_uppercase().as_str() {
            "GET" => Method::GET,
            "HEAD" => Method::HEAD,
            other => {
                errs.at(
                    Some(&m.referenced),
                    format!("{key}.method"),
                    format!("{other:?} is not supported; expected GET or HEAD"),
                );
                Method::GET
            }
        },
    };
    let host = raw
        .host
        .as_ref()
        .and_then(|h| match HeaderValue::from_str(&h.value) {
            Ok(v) if !h.value.is_empty() => Some(v),
            _ => {
                errs.at(
                    Some(&h.referenced),
                    format!("{key}.host"),
                    "not a valid Host header value",
                );
                None
            }
        });
    let expected = match &raw.expected_status {
        None => StatusMatch(vec![DEFAULT_HC_EXPECTED_STATUS]),
        Some(s) => {
            let items: Vec<&RawStatus> = match &s.value {
                RawStatuses::One(one) => vec![one],
                RawStatuses::List(list) => list.iter().collect(),
            };
            let mut ranges = Vec::new();
            for item in items {
                match status_range(item) {
                    Ok(r) => ranges.push(r),
                    Err(m) => errs.at(Some(&s.referenced), format!("{key}.expected_status"), m),
                }
            }
            if ranges.is_empty() {
                errs.at(
                    Some(&s.referenced),
                    format!("{key}.expected_status"),
                    "at least one status is required",
                );
            }
            StatusMatch(ranges)
        }
    };
    HttpProbe {
        method,
        path,
        host,
        expected,
    }
}

/// `200` or `"200"` or `"200-399"` → an inclusive range within 100..=599.
fn status_range(item: &RawStatus) -> Result<(u16, u16), String> {
    let code = |s: &str| -> Result<u16, String> {
        match s.trim().parse::<u16>() {
            Ok(c) if (100..=599).contains(&c) => Ok(c),
            _ => Err(format!(
                "{s:?} is not an HTTP status (100-599); expected e.g. \"200\", \"200-399\" or a list"
            )),
        }
    };
    match item {
        RawStatus::Code(c) => code(&c.to_string()).map(|c| (c, c)),
        RawStatus::Text(t) => match t.split_once('-') {
            None => code(t).map(|c| (c, c)),
            Some((lo, hi)) => {
                let (lo, hi) = (code(lo)?, code(hi)?);
                if lo > hi {
                    Err(format!("range {t:?} is empty (first status is larger)"))
                } else {
                    Ok((lo, hi))
                }
            }
        },
    }
}

/// Validates `passive` of the group at `key` (`groups.NAME`).
pub(super) fn passive(raw: &RawPassive, key: &str, errs: &mut Errors) -> Option<PassiveConfig> {
    let key = format!("{key}.passive");
    let before = errs.list.len();
    let consecutive_failures = match &raw.consecutive_failures {
        None => DEFAULT_PASSIVE_FAILURES,
        Some(v) if (1..=1000).contains(&v.value) => v.value,
        Some(v) => {
            errs.at(
                Some(&v.referenced),
                format!("{key}.consecutive_failures"),
                "must be between 1 and 1000",
            );
            DEFAULT_PASSIVE_FAILURES
        }
    };
    let ejection = duration(
        &raw.ejection,
        DEFAULT_PASSIVE_EJECTION,
        format!("{key}.ejection"),
        errs,
    );
    let max_ejection = duration(
        &raw.max_ejection,
        DEFAULT_PASSIVE_MAX_EJECTION.max(ejection),
        format!("{key}.max_ejection"),
        errs,
    );
    if max_ejection < ejection {
        let loc = raw.max_ejection.as_ref().map(|v| &v.referenced);
        errs.at(
            loc,
            format!("{key}.max_ejection"),
            "must not be shorter than ejection",
        );
    }
    if errs.list.len() > before {
        return None;
    }
    Some(PassiveConfig {
        consecutive_failures,
        ejection,
        max_ejection,
        on_5xx: raw.on_5xx.unwrap_or(false),
    })
}
