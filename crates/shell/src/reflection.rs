//! Server reflection v1 (current grpcurl, `buf curl`) and v1alpha (grpcurl 1.8.6 and other
//! older clients), both listing the same services and resolving the same types.

use tonic::codec::CompressionEncoding;
use tonic_reflection::server::{Builder, Error, v1, v1alpha};

/// Descriptor sets every server registers besides the service's own: health, both
/// reflection versions, and `google.rpc` error details so that clients can decode the
/// `BadRequest`/`ErrorInfo` details our errors carry.
pub(crate) const SHELL_DESCRIPTOR_SETS: &[&[u8]] = &[
    tonic_health::pb::FILE_DESCRIPTOR_SET,
    tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
    tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    tonic_types::pb::FILE_DESCRIPTOR_SET,
];

const SHELL_SERVICES: &[&str] = &[
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

pub(crate) fn services(
    descriptor_sets: &[&'static [u8]],
    advertised_services: &[&'static str],
) -> Result<
    (
        v1::ServerReflectionServer<impl v1::ServerReflection>,
        v1alpha::ServerReflectionServer<impl v1alpha::ServerReflection>,
    ),
    Error,
> {
    let builder = || {
        let mut builder = Builder::configure().include_reflection_service(false);
        for set in descriptor_sets.iter().chain(SHELL_DESCRIPTOR_SETS) {
            builder = builder.register_encoded_file_descriptor_set(set);
        }
        for name in advertised_services.iter().chain(SHELL_SERVICES) {
            builder = builder.with_service_name(*name);
        }
        builder
    };
    Ok((
        builder()
            .build_v1()?
            .max_decoding_message_size(crate::SHELL_MAX_REQUEST_BYTES)
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Deflate),
        builder()
            .build_v1alpha()?
            .max_decoding_message_size(crate::SHELL_MAX_REQUEST_BYTES)
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Deflate),
    ))
}
