//! source -> transforms -> encoder -> sinks.
//!
//! The image is encoded once into a staging blob store (on the first local
//! sink's filesystem when there is one, so blobs are hardlinked, not copied),
//! then every sink writes it. The staging store is removed at the end, whether
//! the run succeeded or not.

use crate::blobs::BlobStore;
use crate::error::{Error, Result, Role};
use crate::image::{self, BuiltImage};
use crate::layer::{self, Compression};
use crate::plugin::{Selector, Sink, Source, Transform, Written};
use crate::progress::Context;

/// A plugin instance with the selector it was made from.
pub struct Stage<T: ?Sized> {
    pub selector: Selector,
    pub plugin: Box<T>,
}

impl<T: ?Sized> Stage<T> {
    #[must_use]
    pub fn new(selector: Selector, plugin: Box<T>) -> Self {
        Stage { selector, plugin }
    }
}

/// Encoding settings of a run.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub compression: Compression,
    /// Image time and upper bound of every mtime. `None`: the source's own
    /// time, else the newest mtime in the tree.
    pub timestamp: Option<i64>,
    /// A cache of encoded layers: unchanged layers are not encoded again.
    pub cache: Option<std::path::PathBuf>,
    /// Paths dropped from the source's tree before the transforms.
    pub prune: Vec<Prune>,
}

/// A path to drop from a tree (`--prune PATH`), or whose contents to drop
/// while keeping the directory (`--prune PATH/`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prune {
    pub path: crate::tree::TreePath,
    pub keep_dir: bool,
}

impl Prune {
    /// Parses `PATH` or `PATH/` (absolute or not; `/` alone empties the
    /// tree's root, which is refused).
    ///
    /// # Errors
    /// A path that escapes the root, or the root itself.
    pub fn parse(text: &str) -> Result<Self> {
        let path = crate::tree::TreePath::parse(text.as_bytes())
            .map_err(|e| Error::usage(format!("--prune {text}: {e}")))?;
        if path.is_root() {
            return Err(Error::usage(format!(
                "--prune {text}: would drop the whole tree"
            )));
        }
        Ok(Prune {
            path,
            keep_dir: text.ends_with('/'),
        })
    }

    /// Drops what this names from `tree`; false when nothing matched.
    pub fn apply(&self, tree: &mut crate::tree::Tree) -> bool {
        let before = tree.len();
        let keep_dir = self.keep_dir;
        tree.entries_mut()
            .retain(|e| !e.path.starts_with(&self.path) || (keep_dir && e.path == self.path));
        tree.len() != before || tree.get(&self.path).is_some()
    }
}

/// A whole export.
pub struct Pipeline {
    pub source: Stage<dyn Source>,
    pub transforms: Vec<Stage<dyn Transform>>,
    pub sinks: Vec<Stage<dyn Sink>>,
    pub settings: Settings,
    /// A layer cache shared through a registry or a directory
    /// (`--cache docker://...`, `--cache oci:...`).
    pub shared_cache: Option<SharedCacheStage>,
}

/// Where a shared layer cache is read from and written to.
pub struct SharedCacheStage {
    /// The reference, as given (`docker://HOST/REPO:TAG`).
    pub reference: String,
    /// Where its blobs are, for mounts (`docker://HOST/REPO`).
    pub origin: String,
    /// The tag the cache image has.
    pub tag: String,
    /// Reads it; `None` when there is nothing there yet.
    pub reader: Option<Box<dyn crate::ports::ImageReader>>,
    /// Writes it back.
    pub sink: Box<dyn Sink>,
}

/// What a run produced.
#[derive(Debug)]
pub struct Outcome {
    pub image: BuiltImage,
    /// Where each sink wrote the image.
    pub destinations: Vec<Written>,
    /// Entries in the tree.
    pub entries: usize,
    /// Bytes of file content in the tree.
    pub content_bytes: u64,
    /// Layers taken from the cache instead of being encoded.
    pub cached_layers: usize,
    /// True when the shared cache was written back.
    pub cache_written: bool,
}

impl Pipeline {
    /// Refuses, before any work, a transform that reshapes the tree after
    /// one that wrote its final form (`--transform bootc --transform chunk`).
    ///
    /// # Errors
    /// A usage error naming both transforms and the order that works.
    pub fn check_order(&self) -> Result<()> {
        let Some(sealer) = self.transforms.iter().position(|t| t.plugin.seals_tree()) else {
            return Ok(());
        };
        let by = &self.transforms[sealer].selector;
        if let Some(later) = self.transforms[sealer + 1..]
            .iter()
            .find(|t| t.plugin.reshapes_tree())
        {
            return Err(Error::usage(format!(
                "transform '{}' cannot come after '{by}', which writes the tree's final form: \
                 put '{}' before '{}'",
                later.selector,
                later.selector.kind(),
                by.kind()
            )));
        }
        Ok(())
    }

    /// Runs the pipeline.
    ///
    /// # Errors
    /// The first failing stage's error. Sinks that already wrote keep their
    /// output; the failing sink leaves its destination as it was.
    pub fn run(mut self, ctx: &Context) -> Result<Outcome> {
        if self.sinks.is_empty() {
            return Err(Error::usage("no sink given (use --sink KIND:DEST)"));
        }
        self.check_order()?;
        // What killed runs left where this one writes.
        crate::cleanup::remove_stale(&std::env::temp_dir());
        for sink in &self.sinks {
            if let Some(dir) = sink.plugin.staging_dir() {
                crate::cleanup::remove_stale(&dir);
            }
        }
        for sink in &self.sinks {
            ctx.check_signable(sink.plugin.signature_formats(), sink.selector.as_str())?;
        }
        for sink in &mut self.sinks {
            sink.plugin
                .prepare(ctx)
                .map_err(|e| e.context(stage(Role::Sink, &sink.selector)))?;
        }
        let cache_context = |e: Error, what: &str| e.context(format!("cache {what}"));
        let mut shared_stage = self.shared_cache.take();
        let shared = match &mut shared_stage {
            Some(c) => {
                c.sink
                    .prepare(&ctx.without_signing())
                    .map_err(|e| cache_context(e, &c.reference))?;
                Some(
                    layer::shared::SharedCache::open(
                        &c.reference,
                        c.reader.take(),
                        &c.tag,
                        ctx.warner(),
                    )
                    .map_err(|e| cache_context(e, &c.reference))?,
                )
            }
            None => None,
        };

        let mut draft = self
            .source
            .plugin
            .read(ctx)
            .map_err(|e| e.context(stage(Role::Source, &self.source.selector)))?;
        draft.tree.normalize()?;
        for p in &self.settings.prune {
            if !p.apply(&mut draft.tree) {
                ctx.warn(&format!("--prune {}: no such path in the tree", p.path));
            }
        }
        // The image time is settled before the transforms, which may need it
        // (a commit they write carries it).
        let time = self
            .settings
            .timestamp
            .or(draft.source_time)
            .or_else(|| draft.tree.max_mtime())
            .unwrap_or(0);
        draft.source_time = Some(time);
        for t in &mut self.transforms {
            let sealed = draft.sealed_by.clone().map(|by| (by, draft.shape()));
            t.plugin
                .apply(&mut draft, ctx)
                .map_err(|e| e.context(stage(Role::Transform, &t.selector)))?;
            draft.tree.normalize()?;
            if let Some((by, shape)) = sealed
                && draft.shape() != shape
            {
                return Err(Error::invalid(format!(
                    "transform '{}' changed the tree after '{by}' wrote its final form; \
                     put '{}' before '{by}'",
                    t.selector,
                    t.selector.kind()
                )));
            }
        }
        if draft.layers.is_empty() {
            draft.layers.push(image::LayerInfo::default());
        }
        let time = draft.source_time.unwrap_or(time);
        draft.tree.clamp_mtimes(time);

        let staging_parent = self.sinks.iter().find_map(|s| s.plugin.staging_dir());
        let store = BlobStore::temporary_in(staging_parent.as_deref())?;
        let task = ctx
            .progress()
            .task("encoding layers", Some(draft.tree.content_bytes()));
        let cache = self
            .settings
            .cache
            .as_ref()
            .map(layer::cache::LayerCache::open)
            .transpose()?;
        // Sinks that can take layers while they are encoded (a registry).
        let taps: Vec<_> = self
            .sinks
            .iter_mut()
            .filter_map(|s| s.plugin.blob_tap())
            .collect();
        let (layers, cached_layers) = layer::encode_layers(
            &draft.tree,
            draft.layers.len(),
            &layer::Encoding {
                compression: self.settings.compression,
                threads: ctx.threads(),
                cache: cache.as_ref(),
                shared: shared.as_ref(),
                taps: &taps,
            },
            &store,
            &*task,
        )?;
        task.finish();
        let image = image::build(&draft, layers, time, &store)?;
        if let (Some(shared), Some(c)) = (&shared, &shared_stage) {
            for d in shared.fetched() {
                ctx.note_blob_origin(d, &c.origin);
            }
            if shared.holds(&image.config_digest) {
                ctx.note_blob_origin(image.config_digest, &c.origin);
            }
            shared.keep_config(image.config_digest, image.config.len() as u64);
        }

        // Every sink writes the same blobs: they run side by side.
        let results: Vec<Result<Written>> = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .sinks
                .iter_mut()
                .map(|sink| {
                    let (image, store) = (&image, &store);
                    scope.spawn(move || {
                        sink.plugin
                            .write(image, store, ctx)
                            .map_err(|e| e.context(stage(Role::Sink, &sink.selector)))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(Error::Other("a sink panicked".into())))
                })
                .collect()
        });
        let destinations = results.into_iter().collect::<Result<Vec<_>>>()?;
        // The cache learns what this run made (after the image is written:
        // a cache that cannot be written loses the next run time, not this
        // run's image).
        let mut cache_written = false;
        if let (Some(shared), Some(c)) = (&shared, &mut shared_stage)
            && shared.changed()
        {
            // A cache that cannot be written (read-only credentials, a
            // blob gone from it) costs the next run time; this run's image
            // is written, so it is a warning.
            let written = shared
                .image(&store, &c.tag)
                .and_then(|set| c.sink.write_set(&set, &store, &ctx.without_signing()));
            match written {
                Ok(_) => cache_written = true,
                Err(e) => ctx.warn(&format!(
                    "cache {} not updated (the image is written): {e}",
                    c.reference
                )),
            }
        }
        Ok(Outcome {
            cache_written,
            image,
            destinations,
            entries: draft.tree.len(),
            content_bytes: draft.tree.content_bytes(),
            cached_layers,
        })
    }
}

/// How an error names the stage it came from, once, for every stage:
/// `source rootfs:/srv/tree`, `transform chunk`, `sink oci:out:latest`.
/// Plugins name the object that failed, not themselves.
#[must_use]
pub fn stage(role: Role, selector: &Selector) -> String {
    format!("{role} {selector}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::ImageDraft;
    use crate::tree::{Entry, EntryKind, Tree, TreePath};

    struct OneDir;
    impl Source for OneDir {
        fn read(&mut self, _ctx: &Context) -> Result<ImageDraft> {
            let mut tree = Tree::new();
            tree.push(Entry::new(
                TreePath::parse(b"etc").expect("the test literal parses"),
                EntryKind::Dir,
            ));
            Ok(ImageDraft::new(tree))
        }
    }

    /// Seals the tree, as bootc does, without saying so up front.
    struct Sealer;
    impl Transform for Sealer {
        fn apply(&mut self, image: &mut ImageDraft, _ctx: &Context) -> Result<()> {
            image.sealed_by = Some("sealer".into());
            Ok(())
        }
    }

    /// Edits labels only, or moves an entry.
    struct Edit(bool);
    impl Transform for Edit {
        fn apply(&mut self, image: &mut ImageDraft, _ctx: &Context) -> Result<()> {
            image.config.labels.insert("k".into(), "v".into());
            if self.0 {
                image.tree.entries_mut()[0].path =
                    TreePath::parse(b"usr").expect("the test literal parses");
            }
            Ok(())
        }
    }

    struct Unreached;
    impl Sink for Unreached {
        fn write(&mut self, _: &BuiltImage, _: &BlobStore, _: &Context) -> Result<Written> {
            Err(Error::Other("not reached".into()))
        }
    }

    fn pipeline(moves: bool) -> Pipeline {
        let stage = |s: &str, t: Box<dyn Transform>| {
            Stage::new(Selector::parse(s).expect("the test literal parses"), t)
        };
        Pipeline {
            source: Stage::new(
                Selector::parse("one:").expect("the test literal parses"),
                Box::new(OneDir),
            ),
            transforms: vec![
                stage("sealer", Box::new(Sealer)),
                stage("edit", Box::new(Edit(moves))),
            ],
            shared_cache: None,
            sinks: vec![Stage::new(
                Selector::parse("none:").expect("the test literal parses"),
                Box::new(Unreached),
            )],
            settings: Settings::default(),
        }
    }

    #[test]
    fn a_sealed_tree_may_get_labels_but_not_new_entries() {
        let ctx = Context::quiet();
        let err = pipeline(true).run(&ctx).unwrap_err().to_string();
        assert!(
            err.contains("transform 'edit' changed the tree after 'sealer' wrote its final form; put 'edit' before 'sealer'"),
            "{err}"
        );
        // Labels alone pass the check and reach the sink.
        let err = pipeline(false).run(&ctx).unwrap_err().to_string();
        assert!(err.contains("not reached"), "{err}");
    }
}
