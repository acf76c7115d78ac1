//! Transform `bootc`: an image that bootc and OSTree can deploy.
//!
//! The tree is committed with libostree (a tree read from an unchanged
//! OSTree commit gives back that very commit), and the layers carry the
//! commit the way ostree-ext writes it: the objects under
//! `sysroot/ostree/repo/objects/`, every path a hardlink to its object,
//! `/usr/etc` shown as `/etc`. Labels: `containers.bootc=1`,
//! `ostree.commit`, `ostree.final-diffid`, `ostree.bootable` and
//! `ostree.linux` for a bootable commit, and the version labels. A layer plan
//! made before (by `chunk`) is kept: layer 0 carries the commit and what the
//! plan left there, every other layer its share of the content.
//!
//! The checks of `bootc container lint` that apply run first (see [`lint`]).

pub mod commit;
pub mod layout;
pub mod lint;

use ostree::glib;
use treeport_core::error::{Error, Result};
use treeport_core::image::ImageDraft;
use treeport_core::plugin::{Builtin, BuiltinFactory, Options, Selector, Transform};
use treeport_core::progress::Context;
use treeport_core::tree::TreePath;

treeport_core::inventory::submit! {
    Builtin {
        kind: "bootc",
        description: "a bootable container: the OSTree commit carried as ostree-ext writes it, bootc labels, lints",
        usage: "bootc",
        options: &[],
        factory: BuiltinFactory::Transform(BootcTransform::build),
    }
}

/// Makes a draft into a bootc image.
#[derive(Default)]
pub struct BootcTransform {
    /// The temporary repository, kept until the run ends.
    committed: Option<commit::Committed>,
}

impl BootcTransform {
    fn build(selector: &Selector, options: &Options) -> Result<Box<dyn Transform>> {
        options.check_keys("transform bootc", &[])?;
        if !selector.rest().is_empty() {
            return Err(Error::usage(format!(
                "transform bootc takes no options ('{selector}')"
            )));
        }
        Ok(Box::new(BootcTransform::default()))
    }
}

impl Transform for BootcTransform {
    fn seals_tree(&self) -> bool {
        true
    }

    fn reshapes_tree(&self) -> bool {
        true
    }

    fn apply(&mut self, image: &mut ImageDraft, ctx: &Context) -> Result<()> {
        let repo_dir = TreePath::parse(b"sysroot/ostree/repo/objects")?;
        if image.tree.get(&repo_dir).is_some() {
            return Err(Error::usage(
                "the tree already holds an OSTree repository (/sysroot/ostree/repo, as a bootc \
                 image carries its commit); to commit its files anew, drop it with \
                 --prune /sysroot/ (and give --transform bootc once, after chunk)",
            ));
        }
        lint::run(&image.tree, ctx)?;
        let committed = commit::commit(image, ctx)?;
        let layers = image.layers.len().max(1);
        let tree = layout::build(&committed, layers)?;

        let commit_v = committed
            .repo
            .load_variant(ostree::ObjectType::Commit, &committed.checksum)
            .map_err(|e| Error::invalid(format!("reading the commit: {}", e.message())))?;
        let metadata = glib::VariantDict::new(Some(&commit_v.child_value(0)));
        let get = |key: &str| {
            metadata.lookup_value(key, None).and_then(|v| {
                v.str()
                    .map(str::to_string)
                    .or_else(|| v.get::<bool>().map(|b| b.to_string()))
            })
        };
        let labels = &mut image.config.labels;
        labels.insert("containers.bootc".into(), "1".into());
        labels.insert("ostree.commit".into(), committed.checksum.clone());
        if metadata.contains("ostree.bootable") {
            labels.insert("ostree.bootable".into(), "true".into());
        }
        if let Some(k) = get("ostree.linux") {
            labels.insert("ostree.linux".into(), k);
        }
        if let Some(v) = get("version") {
            labels.insert("org.opencontainers.image.version".into(), v.clone());
            labels.insert("version".into(), v);
        }
        image.layers = layout::infos(&image.layers);
        image
            .diffid_labels
            .retain(|(l, _)| l != "ostree.final-diffid");
        image
            .diffid_labels
            .push(("ostree.final-diffid".into(), image.layers.len() - 1));
        image.tree = tree;
        image.sealed_by = Some("bootc".into());
        image.created_by = format!("treeport bootc ostree commit {}", committed.checksum);
        self.committed = Some(committed);
        Ok(())
    }
}
