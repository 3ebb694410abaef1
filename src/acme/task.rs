//! The ACME task of one listener: load or order, install, renew.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use tokio::sync::watch;

use super::challenge;
use super::client::AcmeHttp;
use super::storage::{Storage, Stored};
use super::AcmeState;
use crate::config::acme::AcmeChallenge;

/// First wait after a failed attempt; doubled after each failure.
pub const MIN_BACKOFF: Duration = Duration::from_secs(60);
/// Longest wait between failed attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// Longest sleep between two checks of a valid certificate (another
/// instance sharing `storage` may have renewed it meanwhile).
pub const CHECK_INTERVAL: Duration = Duration::from_secs(3600);
/// Wait before looking again when another instance holds the order lock.
pub const LOCK_WAIT: Duration = Duration::from_secs(2);
/// Longest wait for the server to validate the challenges and issue.
pub const ORDER_TIMEOUT: Duration = Duration::from_secs(90);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Runs the ACME task of `state` until `stop` (listener removed) or
/// `shutdown` turns true.
pub async fn run(
    state: Arc<AcmeState>,
    mut stop: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let cfg = state.config();
    let storage = Storage::new(&cfg.storage, &cfg.domains, &cfg.directory);
    let mut backoff = MIN_BACKOFF;
    loop {
        // A shutdown or listener removal interrupts an order in flight
        // (the lock and the published challenge answers are dropped).
        let result = tokio::select! {
            r = step(&state, &storage) => r,
            _ = stop.wait_for(|s| *s) => return,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let wait = match result {
            Ok(next) => {
                backoff = MIN_BACKOFF;
                next
            }
            Err(e) => {
                tracing::error!(
                    listener = %state.listener(), domains = ?state.config().domains,
                    retry_in = %humantime::format_duration(backoff), error = %e,
                    "ACME: could not obtain a certificate"
                );
                let w = backoff;
                backoff = next_backoff(backoff);
                w
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// The wait after the next failure: doubled, at most [`MAX_BACKOFF`].
fn next_backoff(d: Duration) -> Duration {
    (d * 2).min(MAX_BACKOFF)
}

/// When `stored` must be renewed (`renew_before` its expiry).
fn renew_at(state: &AcmeState, stored: &Stored) -> SystemTime {
    stored
        .not_after
        .checked_sub(state.config().renew_before)
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// Usable as it is: covers every domain and is not yet due for renewal.
fn fresh(state: &AcmeState, stored: &Stored) -> bool {
    state
        .config()
        .domains
        .iter()
        .all(|d| stored.names.contains(d))
        && SystemTime::now() < renew_at(state, stored)
}

fn install(state: &AcmeState, stored: &Stored, how: &str) {
    let same = state
        .issued()
        .is_some_and(|k| k.cert.first() == stored.key.cert.first());
    if !same {
        state.install(Arc::clone(&stored.key));
        tracing::info!(
            listener = %state.listener(), domains = ?stored.names,
            not_after = %humantime::format_rfc3339_seconds(stored.not_after),
            "ACME: certificate {how}"
        );
    }
}

/// One round: the time until the next.
async fn step(state: &AcmeState, storage: &Storage) -> Result<Duration, BoxError> {
    storage.ensure()?;
    let next = |stored: &Stored| {
        renew_at(state, stored)
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .min(CHECK_INTERVAL)
    };
    let stored = match storage.load() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(listener = %state.listener(), error = %e, "ACME: stored certificate unusable; ordering a new one");
            None
        }
    };
    if let Some(s) = &stored {
        if fresh(state, s) {
            install(state, s, "loaded from storage");
            return Ok(next(s));
        }
        if SystemTime::now() < s.not_after && state.issued().is_none() {
            // Due for renewal but still valid: serve it meanwhile.
            install(state, s, "loaded from storage (due for renewal)");
        }
    }
    let Some(_lock) = storage.lock()? else {
        tracing::info!(listener = %state.listener(), lock = %storage.lock_path().display(), "ACME: another instance is ordering; waiting");
        return Ok(LOCK_WAIT);
    };
    // The lock holder before us may have just stored a fresh one.
    if let Ok(Some(s)) = storage.load() {
        if fresh(state, &s) {
            install(state, &s, "loaded from storage");
            return Ok(next(&s));
        }
    }
    tracing::info!(listener = %state.listener(), domains = ?state.config().domains, directory = %state.config().directory, "ACME: ordering a certificate");
    let (chain, key) = order(state, storage).await?;
    storage.save(&chain, &key)?;
    let s = storage
        .load()?
        .ok_or("the certificate just stored cannot be read back")?;
    install(state, &s, "obtained");
    Ok(next(&s))
}

/// Loads the stored account or creates one (stored at once).
async fn account(state: &AcmeState, storage: &Storage) -> Result<Account, BoxError> {
    let cfg = state.config();
    let http = || AcmeHttp::new(cfg.directory_ca.as_deref());
    let path = storage.account_path();
    if let Ok(json) = std::fs::read(&path) {
        let creds: AccountCredentials =
            serde_json::from_slice(&json).map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(Account::builder_with_http(Box::new(http()?))
            .from_credentials(creds)
            .await?);
    }
    let contact: Vec<&str> = cfg.contact.iter().map(String::as_str).collect();
    let (account, creds) = Account::builder_with_http(Box::new(http()?))
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            cfg.directory.clone(),
            None,
        )
        .await?;
    super::storage::write_atomic(&path, &serde_json::to_vec(&creds)?, true)?;
    tracing::info!(listener = %state.listener(), account = %account.id(), "ACME: account created");
    Ok(account)
}

/// Withdraws the published challenge answers when the order ends.
struct Published<'a> {
    state: &'a AcmeState,
    tokens: Vec<String>,
    alpn: Vec<String>,
}

impl Drop for Published<'_> {
    fn drop(&mut self) {
        for t in &self.tokens {
            challenge::remove_http01(t);
        }
        for d in &self.alpn {
            self.state.set_alpn(d, None);
        }
    }
}

/// Orders a certificate: the PEM chain and the PEM PKCS#8 key.
async fn order(state: &AcmeState, storage: &Storage) -> Result<(String, String), BoxError> {
    let cfg = state.config();
    let account = account(state, storage).await?;
    let ids: Vec<Identifier> = cfg.domains.iter().cloned().map(Identifier::Dns).collect();
    let mut order = account.new_order(&NewOrder::new(&ids)).await?;
    let kind = match cfg.challenge {
        AcmeChallenge::Http01 => ChallengeType::Http01,
        AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
    };
    let mut published = Published {
        state,
        tokens: Vec::new(),
        alpn: Vec::new(),
    };
    let mut auths = order.authorizations();
    while let Some(auth) = auths.next().await {
        let mut auth = auth?;
        match auth.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => return Err(format!("authorization is {other:?}").into()),
        }
        let mut ch = auth
            .challenge(kind.clone())
            .ok_or_else(|| format!("the server offers no {kind:?} challenge"))?;
        let ka = ch.key_authorization();
        match cfg.challenge {
            AcmeChallenge::Http01 => {
                challenge::add_http01(&ch.token, ka.as_str());
                published.tokens.push(ch.token.clone());
            }
            AcmeChallenge::TlsAlpn01 => {
                let domain = ch.identifier().to_string();
                let cert = challenge::alpn_certificate(&domain, ka.digest().as_ref())?;
                state.set_alpn(&domain, Some(cert));
                published.alpn.push(domain);
            }
        }
        ch.set_ready().await?;
    }
    let retry = RetryPolicy::new().timeout(ORDER_TIMEOUT);
    let status = order.poll_ready(&retry).await?;
    if status != OrderStatus::Ready {
        let detail = order
            .state()
            .error
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_default();
        return Err(format!("order is {status:?}, not ready {detail}").into());
    }
    drop(published);
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(cfg.domains.clone())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key)?;
    order.finalize_csr(csr.der()).await?;
    let chain = order.poll_certificate(&retry).await?;
    Ok((chain, key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_a_minute_to_an_hour() {
        let mut d = MIN_BACKOFF;
        let mut seen = vec![d];
        for _ in 0..8 {
            d = next_backoff(d);
            seen.push(d);
        }
        let mins: Vec<u64> = seen.iter().map(|d| d.as_secs() / 60).collect();
        assert_eq!(mins, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }
}
