//! The interface's boundary as each version released it, frozen. Loading
//! checks a library against the oldest layout of its major version, so
//! plugins built for any minor version of it load.

pub mod v1_0;
