//! treeport-core: the model and the engine of treeport.
//!
//! A [`plugin::Source`] yields a [`tree::Tree`] inside an
//! [`image::ImageDraft`]; [`plugin::Transform`]s reshape it; the
//! [`layer`] encoder turns it into compressed tar layers in a
//! [`blobs::BlobStore`]; every [`plugin::Sink`] writes the finished
//! [`image::BuiltImage`]. [`pipeline::Pipeline`] runs the whole chain, and
//! [`registry::Registry`] finds plugins by selector kind.
//!
//! Nothing here knows a particular source or destination format beyond the
//! OCI image layout, which several plugins share ([`layout`]).

pub mod abi;
pub mod archive;
pub mod blobs;
pub mod cleanup;
pub mod copy;
pub mod digest;
pub mod dpkg;
pub mod error;
pub mod flatten;
pub mod image;
pub mod json;
pub mod layer;
pub mod layout;
pub mod media;
pub mod pipeline;
pub mod platform;
pub mod plugin;
pub mod ports;
pub mod progress;
pub mod registry;
pub mod resolve;
pub mod sign;
pub mod tree;
pub mod verify;

pub use error::{Error, Result, Role};

/// Re-exported so plugin crates register with the same `inventory` as core.
pub use inventory;
