//! The error type shared by the engine and the built-in plugins.
//!
//! Every variant renders as one line that says what failed and on what, so the
//! command line can print it as is: `error: <message>`.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// The result type of treeport's library code.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which stage of a pipeline a plugin fills.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Source,
    Transform,
    Sink,
}

impl Role {
    /// The role's name as the command line spells it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Transform => "transform",
            Role::Sink => "sink",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything that can go wrong in the engine or a plugin.
///
/// The message of each variant already contains its cause; the variants do not
/// chain through [`std::error::Error::source`] so that printing the error once
/// never repeats a cause.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation on a named file or directory failed.
    #[error("{}: {}", .path.display(), io_message(.cause))]
    Io { path: PathBuf, cause: io::Error },

    /// The user asked for something malformed: a selector, an option, a flag.
    /// The command line exits with status 2 for these.
    #[error("{0}")]
    Usage(String),

    /// A selector names a kind that no plugin provides.
    #[error("unknown {role} kind '{kind}' (valid kinds: {valid}){hint}")]
    UnknownKind {
        role: Role,
        kind: String,
        valid: String,
        /// Empty, or `; ...` saying what the user may have meant.
        hint: String,
    },

    /// Input that treeport refuses: the message says what and where.
    #[error("{0}")]
    Invalid(String),

    /// A failure with a description of what was being done.
    #[error("{context}: {cause}")]
    Context { context: String, cause: Box<Error> },

    /// Anything else, already described by its message.
    #[error("{0}")]
    Other(String),
}

/// `io::Error`'s own text, without the "(os error N)" suffix that tells a user nothing.
pub(crate) fn io_message(err: &io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, cause: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            cause,
        }
    }

    /// A usage error (exit status 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Error::Usage(message.into())
    }

    /// Refused input.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::Invalid(message.into())
    }

    /// Wraps the error with what was being done.
    #[must_use]
    pub fn context(self, context: impl Into<String>) -> Self {
        Error::Context {
            context: context.into(),
            cause: Box::new(self),
        }
    }

    /// True when the error is the user's malformed request rather than a failure.
    #[must_use]
    pub fn is_usage(&self) -> bool {
        match self {
            Error::Usage(_) => true,
            Error::Context { cause, .. } => cause.is_usage(),
            _ => false,
        }
    }

    /// The underlying I/O error kind, if this is (or wraps) an I/O error.
    #[must_use]
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Error::Io { cause, .. } => Some(cause.kind()),
            Error::Context { cause, .. } => cause.io_kind(),
            _ => None,
        }
    }
}

/// Attaches a path to `io::Result`s.
pub trait IoResultExt<T> {
    /// Turns an `io::Error` into an [`Error::Io`] naming `path`.
    fn at(self, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoResultExt<T> for io::Result<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::io(path.as_ref(), e))
    }
}

/// Adds context to any of treeport's results.
pub trait ResultExt<T> {
    /// Wraps an error with a description of what was being done.
    fn context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> ResultExt<T> for Result<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| e.context(context()))
    }
}

impl From<serde_json::Error> for Error {
    fn from(err: serde_json::Error) -> Self {
        Error::Other(format!("JSON: {err}"))
    }
}
