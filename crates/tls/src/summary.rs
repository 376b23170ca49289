//! What a certificate says about itself, for the logs and the expiry metric.

use std::fmt::Write as _;

use rustls::pki_types::CertificateDer;
use x509_cert::der::Decode as _;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;

/// A leaf certificate's subject, names, serial and expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSummary {
    /// RFC 4514, e.g. `CN=users`.
    pub subject: String,
    /// Its subject alternative names: DNS names and IP addresses.
    pub names: Vec<String>,
    /// Hex bytes separated by colons.
    pub serial: String,
    /// notAfter, in seconds since the Unix epoch.
    pub not_after_unix: i64,
    /// notAfter as the certificate writes it (RFC 3339-like, UTC).
    pub not_after: String,
}

impl CertificateSummary {
    pub fn parse(der: &CertificateDer<'_>) -> Result<Self, String> {
        let certificate =
            x509_cert::Certificate::from_der(der.as_ref()).map_err(|error| error.to_string())?;
        let tbs = &certificate.tbs_certificate;
        let not_after = tbs.validity.not_after;
        let mut names = Vec::new();
        if let Ok(Some((_, SubjectAltName(general_names)))) = tbs.get::<SubjectAltName>() {
            for name in general_names {
                match name {
                    GeneralName::DnsName(dns) => names.push(dns.to_string()),
                    GeneralName::IpAddress(octets) => names.push(ip_text(octets.as_bytes())),
                    _ => {}
                }
            }
        }
        Ok(Self {
            subject: tbs.subject.to_string(),
            names,
            serial: tbs.serial_number.to_string(),
            not_after_unix: i64::try_from(not_after.to_unix_duration().as_secs())
                .unwrap_or(i64::MAX),
            not_after: not_after.to_string(),
        })
    }
}

fn ip_text(octets: &[u8]) -> String {
    if let Ok(v4) = <[u8; 4]>::try_from(octets) {
        return std::net::Ipv4Addr::from(v4).to_string();
    }
    if let Ok(v6) = <[u8; 16]>::try_from(octets) {
        return std::net::Ipv6Addr::from(v6).to_string();
    }
    let mut text = String::new();
    for byte in octets {
        let _ = write!(text, "{byte:02x}");
    }
    text
}
