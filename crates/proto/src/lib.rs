//! The notesuite contracts, generated at build time from `proto/`.
//!
//! Services share only these contracts: no domain model crosses a service boundary.
#![allow(unreachable_pub, missing_debug_implementations, clippy::all)]

pub mod notesuite {
    pub mod users {
        pub mod v1 {
            tonic::include_proto!("notesuite.users.v1");
        }
    }
    pub mod notes {
        pub mod v1 {
            tonic::include_proto!("notesuite.notes.v1");
        }
    }
    pub mod gateway {
        pub mod v1 {
            tonic::include_proto!("notesuite.gateway.v1");
        }
    }
}

pub use notesuite::{gateway::v1 as gateway, notes::v1 as notes, users::v1 as users};

/// Encoded `FileDescriptorSet` of every notesuite contract and the well-known types they
/// import, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/notesuite_descriptor.bin"));
