use std::sync::Arc;

use crate::testing::{SecretDir, TestCa, write_atomically};
use crate::{ClientTls, ServerTls, TlsError};

/// 2031-12-31T00:00:00Z: rcgen writes the expiry day at midnight.
const END_OF_2031: i64 = 1_956_441_600;

fn server(dir: &SecretDir) -> ServerTls {
    ServerTls::load(&dir.cert(), &dir.key(), Some(&dir.ca())).expect("a server configuration")
}

#[test]
fn a_loaded_certificate_is_summarised_with_its_expiry() {
    let ca = TestCa::new("test CA");
    let issued = ca.issue(&["users.notesuite.svc", "127.0.0.1"], 2031);
    let dir = SecretDir::new();
    dir.write(&[&ca], &issued);
    let tls = server(&dir);
    assert_eq!(tls.expiry().unix_seconds(), END_OF_2031);
    let chain = crate::files::Snapshot::read(&[&dir.cert()]).expect("read");
    let summary = crate::CertificateSummary::parse(
        &rustls::pki_types::pem::PemObject::from_pem_slice(chain.file(0)).expect("pem"),
    )
    .expect("summary");
    assert_eq!(summary.subject, "CN=users.notesuite.svc");
    assert_eq!(summary.names, ["users.notesuite.svc", "127.0.0.1"]);
    assert_eq!(summary.serial, issued.serial);
    assert!(
        summary.not_after.starts_with("2031-12-31"),
        "{}",
        summary.not_after
    );
}

#[test]
fn a_reload_swaps_the_configuration_only_when_a_file_changed() {
    let ca = TestCa::new("test CA");
    let dir = SecretDir::new();
    dir.write(&[&ca], &ca.issue(&["users"], 2031));
    let tls = server(&dir);
    let before = tls.config();
    assert!(!tls.reload().expect("reload"), "nothing changed");
    assert!(Arc::ptr_eq(&before, &tls.config()));

    dir.write(&[&ca], &ca.issue(&["users"], 2032));
    assert!(tls.reload().expect("reload"));
    assert!(!Arc::ptr_eq(&before, &tls.config()));
    assert!(tls.expiry().unix_seconds() > END_OF_2031);
}

#[test]
fn a_broken_or_mismatched_file_keeps_the_configuration_in_force() {
    let ca = TestCa::new("test CA");
    let dir = SecretDir::new();
    dir.write(&[&ca], &ca.issue(&["users"], 2031));
    let tls = server(&dir);
    let before = tls.config();

    // Half written.
    let whole = std::fs::read_to_string(dir.cert()).expect("read");
    write_atomically(&dir.cert(), &whole[..whole.len() / 2]);
    let error = tls.reload().expect_err("a half-written certificate");
    assert!(error.to_string().contains("tls.crt"), "{error}");
    assert!(Arc::ptr_eq(&before, &tls.config()));

    // A new certificate beside the old key: the key is not the certificate's.
    let renewed = ca.issue(&["users"], 2032);
    write_atomically(&dir.cert(), &renewed.cert_pem);
    let error = tls.reload().expect_err("a key of another certificate");
    assert!(matches!(error, TlsError::KeyPair { .. }), "{error}");
    assert!(Arc::ptr_eq(&before, &tls.config()));
    assert_eq!(tls.expiry().unix_seconds(), END_OF_2031);

    // Its key arrives: the next reload takes both.
    write_atomically(&dir.key(), &renewed.key_pem);
    assert!(tls.reload().expect("reload"));

    // A missing file.
    std::fs::remove_file(dir.ca()).expect("remove");
    assert!(matches!(tls.reload(), Err(TlsError::Read { .. })));
}

#[test]
fn a_client_needs_a_ca_bundle_and_may_present_a_certificate() {
    let ca = TestCa::new("test CA");
    let dir = SecretDir::new();
    dir.write(&[&ca], &ca.issue(&["gateway"], 2031));
    let anonymous = ClientTls::load(&dir.ca(), None).expect("a client");
    assert!(anonymous.expiry().is_none());
    let with_certificate =
        ClientTls::load(&dir.ca(), Some((&dir.cert(), &dir.key()))).expect("a client");
    assert_eq!(
        with_certificate
            .expiry()
            .map(|expiry| expiry.unix_seconds()),
        Some(END_OF_2031)
    );
    write_atomically(&dir.ca(), "not a certificate");
    assert!(matches!(
        ClientTls::load(&dir.ca(), None),
        Err(TlsError::NoCertificate { .. })
    ));
}

#[test]
fn server_names_are_dns_names_or_ip_addresses() {
    assert!(crate::server_name("users.notesuite.svc").is_ok());
    assert!(matches!(
        crate::server_name("[::1]"),
        Ok(rustls::pki_types::ServerName::IpAddress(_))
    ));
    assert!(matches!(
        crate::server_name("10.0.0.7"),
        Ok(rustls::pki_types::ServerName::IpAddress(_))
    ));
    assert!(crate::server_name("not a name").is_err());
}
