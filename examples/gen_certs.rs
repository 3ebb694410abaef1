//! Generate DEVELOPMENT-ONLY TLS material for weir.
//!
//! ```text
//! cargo run --example gen_certs -- [OUT_DIR]   # default: certs-dev
//! ```
//!
//! Writes into `OUT_DIR`:
//!
//! * `ca.crt` / `ca.key` — a self-signed dev CA (10-year validity).
//! * `localhost.crt` / `localhost.key` — leaf for DNS `localhost`, IP `127.0.0.1`
//!   and IP `::1`, signed by the CA (~5-year validity, serverAuth EKU).
//! * `example.test.crt` / `example.test.key` — leaf for DNS `example.test` and
//!   `*.example.test`, signed by the CA (useful for SNI selection tests).
//!
//! Certificate files contain only the leaf (no chain); clients are expected to
//! trust `ca.crt`. Keys are PKCS#8 PEM (ECDSA P-256).
//!
//! NEVER trust this CA or use these keys in production: the private keys are
//! generated on a developer machine and may be committed to the repository.

use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

const CA_COMMON_NAME: &str = "weir dev CA (DEV ONLY - never trust in production)";
const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// Validity of the CA: ~10 years.
const CA_VALIDITY_DAYS: u32 = 3652;
/// Validity of the leaves: ~5 years (and always shorter than the CA).
const LEAF_VALIDITY_DAYS: u32 = 1826;

fn main() -> Result<(), Box<dyn Error>> {
    let out_dir = PathBuf::from(
        std::env::args_os()
            .nth(1)
            .unwrap_or_else(|| "certs-dev".into()),
    );
    fs::create_dir_all(&out_dir)
        .map_err(|e| format!("creating output directory {}: {e}", out_dir.display()))?;

    // --- CA -----------------------------------------------------------------
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, CA_COMMON_NAME);
    ca_params
        .distinguished_name
        .push(DnType::OrganizationName, "weir development");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    set_validity(&mut ca_params, CA_VALIDITY_DAYS)?;
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

    let mut written = Vec::new();
    written.push(write(&out_dir, "ca.crt", &ca.pem())?);
    written.push(write(&out_dir, "ca.key", &ca.key().serialize_pem())?);

    // --- leaves -------------------------------------------------------------
    let leaves: [(&str, &[&str]); 2] = [
        ("localhost", &["localhost", "127.0.0.1", "::1"]),
        ("example.test", &["example.test", "*.example.test"]),
    ];
    for (name, sans) in leaves {
        let (cert_pem, key_pem) = leaf(name, sans, &ca)?;
        written.push(write(&out_dir, &format!("{name}.crt"), &cert_pem)?);
        written.push(write(&out_dir, &format!("{name}.key"), &key_pem)?);
    }

    println!("DEV ONLY - never trust this CA or use these keys in production.");
    println!("wrote:");
    for path in &written {
        println!("  {}", path.display());
    }
    println!(
        "try: curl --cacert {} https://localhost:8443/",
        out_dir.join("ca.crt").display()
    );
    Ok(())
}

/// Create a serverAuth leaf certificate for `sans` (DNS names or IP literals),
/// signed by `issuer`. Returns `(certificate PEM, PKCS#8 key PEM)`.
fn leaf(
    common_name: &str,
    sans: &[&str],
    issuer: &Issuer<'_, KeyPair>,
) -> Result<(String, String), Box<dyn Error>> {
    let sans: Vec<String> = sans.iter().map(|&s| s.to_owned()).collect();
    let mut params = CertificateParams::new(sans)?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "weir development");
    params.is_ca = IsCa::ExplicitNoCa;
    params.use_authority_key_identifier_extension = true;
    // ECDSA keys: digitalSignature only (keyEncipherment is for RSA key transport).
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    set_validity(&mut params, LEAF_VALIDITY_DAYS)?;

    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Valid from yesterday (tolerates small clock skew) for `days` days.
fn set_validity(params: &mut CertificateParams, days: u32) -> Result<(), Box<dyn Error>> {
    // rcgen exposes `time::OffsetDateTime` but `time` is not a direct
    // dependency, so build "now" as epoch + std Duration (`time` implements
    // `OffsetDateTime +/- std::time::Duration`).
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH)?;
    let not_before = date_time_ymd(1970, 1, 1) + since_epoch - DAY;
    params.not_before = not_before;
    params.not_after = not_before + DAY * days;
    Ok(())
}

fn write(dir: &Path, file: &str, contents: &str) -> Result<PathBuf, Box<dyn Error>> {
    let path = dir.join(file);
    fs::write(&path, contents).map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(path)
}
