//! The gRPC methods a process serves or calls, read from descriptor sets.

use prost::Message as _;

/// One gRPC method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Method {
    /// `/package.Service/Method`, the HTTP/2 path.
    pub path: String,
    /// `package.Service`.
    pub service: String,
    pub method: String,
    /// Whether the client or the server streams.
    pub streaming: bool,
    /// Whether the server streams (its answer is a stream, not one message at the end).
    pub server_streaming: bool,
}

/// Every method of every service in some descriptor sets.
#[derive(Debug, Clone, Default)]
pub struct MethodTable(Vec<Method>);

impl MethodTable {
    pub fn from_descriptor_sets(sets: &[&[u8]]) -> Result<Self, prost::DecodeError> {
        let mut methods = Vec::new();
        for encoded in sets {
            let set = prost_types::FileDescriptorSet::decode(*encoded)?;
            for file in &set.file {
                for service in &file.service {
                    let service_name = match file.package() {
                        "" => service.name().to_owned(),
                        package => format!("{package}.{}", service.name()),
                    };
                    for method in &service.method {
                        let path = format!("/{service_name}/{}", method.name());
                        if methods.iter().any(|known: &Method| known.path == path) {
                            continue;
                        }
                        methods.push(Method {
                            path,
                            service: service_name.clone(),
                            method: method.name().to_owned(),
                            streaming: method.client_streaming() || method.server_streaming(),
                            server_streaming: method.server_streaming(),
                        });
                    }
                }
            }
        }
        Ok(Self(methods))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Method> {
        self.0.iter()
    }
}
