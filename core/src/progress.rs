//! Progress reporting and the run context handed to every plugin.

use std::sync::Arc;

/// Something that shows progress to a user (a terminal bar) or ignores it.
pub trait Progress: Send + Sync {
    /// Starts a task; `total` is in bytes when known.
    fn task(&self, label: &str, total: Option<u64>) -> Box<dyn Task>;
}

/// One running task of a [`Progress`].
pub trait Task: Send + Sync {
    /// Records `n` more bytes done.
    fn advance(&self, n: u64);
    /// Marks the task done.
    fn finish(&self);
}

/// Progress that shows nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Quiet;

impl Progress for Quiet {
    fn task(&self, _label: &str, _total: Option<u64>) -> Box<dyn Task> {
        Box::new(Quiet)
    }
}

impl Task for Quiet {
    fn advance(&self, _n: u64) {}
    fn finish(&self) {}
}

/// Prints a warning.
pub type WarnFn = dyn Fn(&str) + Send + Sync;
/// Opens any image reference treeport reads (the registry's readers).
pub type OpenImageFn =
    dyn Fn(&str) -> crate::Result<Box<dyn crate::ports::ImageReader>> + Send + Sync;

/// What every stage of a run can reach: progress, warnings, parallelism.
#[derive(Clone)]
pub struct Context {
    progress: Arc<dyn Progress>,
    warn: Arc<WarnFn>,
    threads: usize,
    open_image: Option<Arc<OpenImageFn>>,
    signing: Option<Arc<crate::sign::Signing>>,
    origins: Arc<std::sync::Mutex<std::collections::HashMap<crate::digest::Digest, String>>>,
}

impl Context {
    /// A context with the given progress and warning printer, using every core.
    pub fn new(progress: Arc<dyn Progress>, warn: Arc<WarnFn>) -> Self {
        let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Context {
            progress,
            warn,
            threads,
            open_image: None,
            signing: None,
            origins: Arc::default(),
        }
    }

    /// A context that shows nothing, for libraries and tests.
    #[must_use]
    pub fn quiet() -> Self {
        Context::new(Arc::new(Quiet), Arc::new(|_: &str| {}))
    }

    /// Limits the worker threads used for encoding.
    #[must_use]
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    #[must_use]
    pub fn progress(&self) -> &dyn Progress {
        &*self.progress
    }

    /// Reports a warning to the user.
    pub fn warn(&self, message: &str) {
        (self.warn)(message);
    }

    #[must_use]
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Lets stages open image references (`--previous IMAGE`).
    #[must_use]
    pub fn with_image_opener(mut self, open: Arc<OpenImageFn>) -> Self {
        self.open_image = Some(open);
        self
    }

    /// Signs what the run's sinks write (`--sign-key`, `--sign-by`).
    #[must_use]
    pub fn with_signing(mut self, signing: Arc<crate::sign::Signing>) -> Self {
        self.signing = Some(signing);
        self
    }

    /// What the run signs with, if it signs.
    #[must_use]
    pub fn signing(&self) -> Option<&crate::sign::Signing> {
        self.signing.as_deref()
    }

    /// The same context without signing (for what is written beside the
    /// image: the shared layer cache).
    #[must_use]
    pub fn without_signing(&self) -> Self {
        Context {
            signing: None,
            ..self.clone()
        }
    }

    /// The warning printer, to keep.
    #[must_use]
    pub fn warner(&self) -> Arc<WarnFn> {
        Arc::clone(&self.warn)
    }

    /// Records that the blob `digest` is also at `reference` (a repository
    /// of the shared layer cache): a registry sink of the same registry
    /// mounts it from there instead of uploading it.
    pub fn note_blob_origin(&self, digest: crate::digest::Digest, reference: &str) {
        self.origins
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(digest, reference.to_string());
    }

    /// Where else the blob `digest` is known to be (see
    /// [`Context::note_blob_origin`]).
    #[must_use]
    pub fn blob_origin(&self, digest: &crate::digest::Digest) -> Option<String> {
        self.origins
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(digest)
            .cloned()
    }

    /// Refuses a sink that cannot hold the signatures the run makes.
    pub fn check_signable(&self, held: &[crate::sign::Format], sink: &str) -> crate::Result<()> {
        match &self.signing {
            Some(s) => s.check_sink(held, sink),
            None => Ok(()),
        }
    }

    /// Opens an image reference with the readers of the run's registry.
    pub fn open_image(&self, reference: &str) -> crate::Result<Box<dyn crate::ports::ImageReader>> {
        match &self.open_image {
            Some(open) => open(reference),
            None => Err(crate::Error::usage(format!(
                "cannot open {reference}: this run has no image readers"
            ))),
        }
    }
}
