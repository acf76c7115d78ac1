//! Transform `chunk`: splits the tree into layers by package, from the
//! tree's own dpkg database (`var/lib/dpkg/status`, `info/*.list`).
//!
//! Layer 0 holds every directory and every file no package owns (the dpkg
//! database, logs, generated caches). The largest packages get a layer each;
//! the others share layers chosen by a hash of their name, so adding or
//! upgrading one package changes its own layer (and layer 0), never shifts
//! the others. Each layer is annotated with the packages it holds
//! (`ostree.components`). `previous=IMAGE` keeps an earlier image's plan:
//! its packages stay grouped as they were, new ones get a layer of their own.
//!
//! As rpm-ostree and chunkah do, a file's `user.component` extended
//! attribute names the component it belongs to, whatever package owns it
//! (files with one value form one component, in trees without a dpkg
//! database too), and `user.update-interval` (days between updates, on any
//! file of a component) keeps components that change at different paces
//! out of each other's layers.

mod dpkg;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use treeport_core::error::{Error, Result};
use treeport_core::image::{ImageDraft, LayerInfo};
use treeport_core::plugin::{
    Builtin, BuiltinFactory, OptionKind, OptionSpec, Options, Selector, Transform,
};
use treeport_core::progress::Context;
use treeport_core::resolve;

treeport_core::inventory::submit! {
    Builtin {
        kind: "chunk",
        description: "layers split by dpkg package ownership, stable across updates",
        usage: "chunk[:max-layers=N,previous=IMAGE]",
        options: &[
            OptionSpec::new("max-layers", OptionKind::Integer, "N: at most this many layers, 1 to 127 (default 64)"),
            OptionSpec::new("previous", OptionKind::String, "IMAGE: keep the layer plan of an earlier image"),
        ],
        factory: BuiltinFactory::Transform(ChunkTransform::build),
    }
}

/// The annotation naming the packages of a layer (ostree-ext's).
pub const COMPONENTS: &str = "ostree.components";
/// Default layer count.
pub const DEFAULT_MAX_LAYERS: usize = 64;
/// A package at least this large may get a layer of its own.
const ALONE_MIN: u64 = 1 << 20;

/// Splits layers by package.
pub struct ChunkTransform {
    max_layers: usize,
    previous: Option<String>,
}

impl ChunkTransform {
    /// A chunk transform with at most `max_layers` layers.
    pub fn new(max_layers: usize, previous: Option<String>) -> Result<Self> {
        if !(1..=127).contains(&max_layers) {
            return Err(Error::usage(format!(
                "max-layers={max_layers}: expected 1 to 127"
            )));
        }
        Ok(ChunkTransform {
            max_layers,
            previous,
        })
    }

    fn build(_selector: &Selector, options: &Options) -> Result<Box<dyn Transform>> {
        // The registry has merged `chunk:KEY=VALUE` into the options and
        // checked them against OPTIONS.
        let all = options;
        let max = all
            .parse::<usize>("max-layers", "a number of layers")?
            .unwrap_or(DEFAULT_MAX_LAYERS);
        Ok(Box::new(ChunkTransform::new(
            max,
            all.get("previous").map(str::to_string),
        )?))
    }
}

/// FNV-1a: a hash that stays the same across builds and platforms.
fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The xattr naming a file's component (rpm-ostree's and chunkah's).
pub const COMPONENT_XATTR: &[u8] = b"user.component";
/// The xattr giving a component's update interval in days.
pub const INTERVAL_XATTR: &[u8] = b"user.update-interval";

/// An update interval's class: components whose intervals are within a
/// factor of two share one.
fn interval_class(days: u64) -> u32 {
    64 - days.max(1).leading_zeros()
}

/// Groups of packages, one per layer after layer 0.
#[must_use]
pub fn plan(sizes: &BTreeMap<String, u64>, max_layers: usize) -> Vec<BTreeSet<String>> {
    plan_with_intervals(sizes, &BTreeMap::new(), max_layers)
}

/// [`plan`], with components of known update intervals binned apart from
/// those of other interval classes: each class gets its own bins, in
/// proportion to how many components it has (one at least, while there
/// are bins to give).
#[must_use]
pub fn plan_with_intervals(
    sizes: &BTreeMap<String, u64>,
    intervals: &BTreeMap<String, u64>,
    max_layers: usize,
) -> Vec<BTreeSet<String>> {
    let slots = max_layers.saturating_sub(1);
    if slots == 0 {
        return Vec::new();
    }
    let mut by_size: Vec<(&String, u64)> = sizes.iter().map(|(p, s)| (p, *s)).collect();
    by_size.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let alone: Vec<&String> = by_size
        .iter()
        .take(slots / 2)
        .filter(|(_, s)| *s >= ALONE_MIN)
        .map(|(p, _)| *p)
        .collect();
    let bins = (slots - alone.len()).max(1);
    let mut groups: Vec<BTreeSet<String>> = alone
        .iter()
        .map(|p| BTreeSet::from([(*p).clone()]))
        .collect();
    // Components by interval class (0: no interval known).
    let mut classes: BTreeMap<u32, Vec<&String>> = BTreeMap::new();
    for p in sizes.keys() {
        if !alone.contains(&p) {
            let class = intervals.get(p).map_or(0, |d| interval_class(*d));
            classes.entry(class).or_default().push(p);
        }
    }
    let members: usize = classes.values().map(Vec::len).sum();
    let mut left = bins;
    let count = classes.len();
    for (i, (_, names)) in classes.into_iter().enumerate() {
        // The last class takes the bins that are left; the others their
        // share, one at least, leaving one for each class after them.
        let share = if i + 1 == count {
            left
        } else {
            (bins * names.len() / members.max(1))
                .max(1)
                .min(left.saturating_sub(count - i - 1).max(1))
        };
        left = left.saturating_sub(share);
        let mut binned: Vec<BTreeSet<String>> = vec![BTreeSet::new(); share.max(1)];
        for p in names {
            binned[(fnv1a(p) % share.max(1) as u64) as usize].insert(p.clone());
        }
        groups.extend(binned.into_iter().filter(|g| !g.is_empty()));
    }
    groups
}

/// The package groups of an earlier image's layers.
fn previous_plan(ctx: &Context, reference: &str) -> Result<Vec<BTreeSet<String>>> {
    let mut reader = ctx.open_image(reference)?;
    let image = resolve::resolve(&mut *reader, None)
        .map_err(|e| e.context(format!("previous image {reference}")))?;
    Ok(image
        .parsed
        .layers()
        .iter()
        .filter_map(|l| l.annotations().as_ref()?.get(COMPONENTS).cloned())
        .map(|list| {
            list.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .collect())
}

impl Transform for ChunkTransform {
    fn reshapes_tree(&self) -> bool {
        true
    }

    fn apply(&mut self, image: &mut ImageDraft, ctx: &Context) -> Result<()> {
        let owners = dpkg::owners(&image.tree)?;
        let xattr = |e: &treeport_core::tree::Entry, name: &[u8]| {
            e.xattrs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| String::from_utf8_lossy(v).trim().to_string())
                .filter(|v| !v.is_empty())
        };
        // Components named by `user.component`, which win over packages.
        let components: Vec<Option<String>> = image
            .tree
            .entries()
            .iter()
            .map(|e| {
                if e.is_dir() {
                    None
                } else {
                    xattr(e, COMPONENT_XATTR)
                }
            })
            .collect();
        if owners.packages.is_empty() && components.iter().all(Option::is_none) {
            return Err(Error::invalid(
                "the tree has no dpkg database (var/lib/dpkg/status) and no \
                 user.component attributes; nothing to split by",
            ));
        }
        // Sizes of the installed packages and components, by what they own
        // in this tree, and their update intervals.
        let mut sizes: BTreeMap<String, u64> =
            owners.packages.iter().map(|p| (p.clone(), 0)).collect();
        let mut intervals: BTreeMap<String, u64> = BTreeMap::new();
        let mut owner_of: Vec<Option<&String>> = Vec::with_capacity(image.tree.len());
        for (e, component) in image.tree.entries().iter().zip(&components) {
            let owner = if e.is_dir() {
                None
            } else {
                component
                    .as_ref()
                    .or_else(|| owners.by_path.get(e.path.as_bytes()))
            };
            if let Some(p) = owner {
                *sizes.entry(p.clone()).or_default() += e.size;
                if let Some(days) = xattr(e, INTERVAL_XATTR).and_then(|v| v.parse::<u64>().ok()) {
                    let d = intervals.entry(p.clone()).or_insert(days);
                    *d = (*d).min(days);
                }
            }
            owner_of.push(owner);
        }
        let groups = match &self.previous {
            Some(reference) => {
                let mut groups: Vec<BTreeSet<String>> = previous_plan(ctx, reference)?
                    .into_iter()
                    .map(|g| {
                        g.into_iter()
                            .filter(|p| sizes.contains_key(p))
                            .collect::<BTreeSet<_>>()
                    })
                    .filter(|g| !g.is_empty())
                    .collect();
                let known: BTreeSet<&String> = groups.iter().flatten().collect();
                let new: BTreeSet<String> = sizes
                    .keys()
                    .filter(|p| !known.contains(p))
                    .cloned()
                    .collect();
                if !new.is_empty() {
                    if groups.len() + 1 < self.max_layers {
                        groups.push(new);
                    } else if let Some(smallest) = groups.iter_mut().min_by_key(|g| g.len()) {
                        smallest.extend(new);
                    }
                }
                fit(groups, &sizes, self.max_layers)
            }
            None => plan_with_intervals(&sizes, &intervals, self.max_layers),
        };
        let layer_of: HashMap<&String, usize> = groups
            .iter()
            .enumerate()
            .flat_map(|(i, g)| g.iter().map(move |p| (p, i + 1)))
            .collect();

        // Every name of one inode stays in the layer of its first name.
        let mut link_layer: HashMap<u64, usize> = HashMap::new();
        let assignments: Vec<usize> = image
            .tree
            .entries()
            .iter()
            .zip(&owner_of)
            .map(|(e, owner)| {
                let layer = owner.and_then(|p| layer_of.get(p).copied()).unwrap_or(0);
                match e.link {
                    Some(l) => *link_layer.entry(l).or_insert(layer),
                    None => layer,
                }
            })
            .collect();
        for (e, layer) in image.tree.entries_mut().iter_mut().zip(assignments) {
            e.layer = layer;
        }
        let mut layers = vec![LayerInfo {
            annotations: BTreeMap::new(),
            created_by: "directories and files of no package".into(),
        }];
        for g in &groups {
            let names: Vec<&str> = g.iter().map(String::as_str).collect();
            let mut annotations = BTreeMap::new();
            annotations.insert(COMPONENTS.to_string(), names.join(","));
            layers.push(LayerInfo {
                annotations,
                created_by: format!("packages: {}", names.join(" ")),
            });
        }
        image.layers = layers;
        Ok(())
    }
}

/// An earlier image's plan made to fit `max_layers` (the layer of files of
/// no package included): while it has too many groups, the two smallest in
/// this tree are merged, so the large layers keep their content (and their
/// digests, where it did not change).
fn fit(
    mut groups: Vec<BTreeSet<String>>,
    sizes: &BTreeMap<String, u64>,
    max_layers: usize,
) -> Vec<BTreeSet<String>> {
    let slots = max_layers.saturating_sub(1);
    if slots == 0 {
        // One layer: everything goes to the layer of no package.
        return Vec::new();
    }
    let size = |g: &BTreeSet<String>| {
        g.iter()
            .map(|p| sizes.get(p).copied().unwrap_or(0))
            .sum::<u64>()
    };
    while groups.len() > slots {
        let mut order: Vec<usize> = (0..groups.len()).collect();
        order.sort_by_key(|&i| (size(&groups[i]), groups[i].first().cloned()));
        let (keep, gone) = (order[0].min(order[1]), order[0].max(order[1]));
        let merged = groups.remove(gone);
        groups[keep].extend(merged);
    }
    groups
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_earlier_plan_is_fitted_to_max_layers_by_merging_its_smallest_groups() {
        let sizes: BTreeMap<String, u64> = [("a", 100), ("b", 1), ("c", 2), ("d", 50), ("e", 3)]
            .into_iter()
            .map(|(p, n)| (p.to_string(), n))
            .collect();
        let groups: Vec<BTreeSet<String>> = ["a", "b", "c", "d", "e"]
            .into_iter()
            .map(|p| BTreeSet::from([p.to_string()]))
            .collect();
        let set = |ps: &[&str]| ps.iter().map(ToString::to_string).collect::<BTreeSet<_>>();
        // Room for all: unchanged.
        assert_eq!(super::fit(groups.clone(), &sizes, 6), groups);
        // Four layers (three groups): b+c, then bc+e merge; a and d stay.
        let got = super::fit(groups.clone(), &sizes, 4);
        assert_eq!(got, vec![set(&["a"]), set(&["b", "c", "e"]), set(&["d"])]);
        // Two layers: one group of everything; one layer: no group.
        assert_eq!(
            super::fit(groups.clone(), &sizes, 2),
            vec![set(&["a", "b", "c", "d", "e"])]
        );
        assert!(super::fit(groups, &sizes, 1).is_empty());
    }

    use super::*;

    #[test]
    fn a_new_small_package_changes_one_group_only() {
        let mut sizes: BTreeMap<String, u64> = (0..90)
            .map(|i| (format!("pkg{i}"), if i < 20 { 5 << 20 } else { 20_000 + i }))
            .collect();
        let before = plan(&sizes, 64);
        sizes.insert("hello".into(), 280_000);
        let after = plan(&sizes, 64);
        let changed = after.iter().filter(|g| !before.contains(g)).count();
        assert_eq!(changed, 1, "{before:?}\n{after:?}");
        assert!(before.len() <= 63 && before.len() >= 8, "{}", before.len());
    }

    #[test]
    fn components_of_other_update_intervals_never_share_a_layer() {
        let sizes: BTreeMap<String, u64> = (0..200).map(|i| (format!("c{i}"), 10_000)).collect();
        let intervals: BTreeMap<String, u64> = (0..200)
            .filter(|i| i % 4 != 0)
            .map(|i| (format!("c{i}"), [1u64, 7, 30][i % 3]))
            .collect();
        let groups = plan_with_intervals(&sizes, &intervals, 32);
        assert!(groups.len() <= 31);
        for g in &groups {
            let classes: BTreeSet<u32> = g
                .iter()
                .map(|c| intervals.get(c).map_or(0, |d| interval_class(*d)))
                .collect();
            assert_eq!(classes.len(), 1, "{g:?}");
        }
    }

    #[test]
    fn limits_are_checked() {
        assert!(ChunkTransform::new(0, None).is_err());
        assert!(ChunkTransform::new(128, None).is_err());
        assert!(plan(&BTreeMap::from([("a".to_string(), 1)]), 1).is_empty());
    }
}
