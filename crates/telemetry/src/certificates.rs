//! The expiry of the TLS certificates a process presents, as a gauge:
//! `notesuite.tls.certificate.expiry_timestamp` (Prometheus:
//! `notesuite_tls_certificate_expiry_timestamp_seconds`), the certificate's notAfter in seconds
//! since the Unix epoch, by `role` (`server`: the certificate a port serves; `client`: the one
//! the gateway presents to its backends). It follows reloads: alert on `value - time() < 7d`
//! to hear of a rotation that stopped happening.

/// Registers the gauge for `role`; `not_after` reports the certificate in force whenever
/// metrics are collected.
pub fn observe_certificate_expiry(
    role: &'static str,
    not_after: impl Fn() -> i64 + Send + Sync + 'static,
) {
    let meter = opentelemetry::global::meter(crate::SCOPE);
    let attributes = [opentelemetry::KeyValue::new("role", role)];
    meter
        .i64_observable_gauge("notesuite.tls.certificate.expiry_timestamp")
        .with_unit("s")
        .with_description("notAfter of the TLS certificate in force, in seconds since the epoch")
        .with_callback(move |observer| observer.observe(not_after(), &attributes))
        .build();
}
