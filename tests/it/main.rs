//! treeport's integration tests: the real binary, real trees, real consumers.

mod abi;
mod bootc;
mod cli;
mod debian;
mod export;
mod hardening;
mod images;
mod newuser;
mod plugins;
mod registry;
mod reproducible;
mod sbom;
mod shared_cache;
mod sign;
mod sources;
mod trust;
