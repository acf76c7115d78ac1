//! `KIND:REST` selectors, as skopeo spells transports, and `KEY=VALUE` options.

use std::fmt;

use crate::error::{Error, Result};

/// A parsed `KIND:REST` selector. It prints back exactly as it was typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    raw: String,
    kind_len: usize,
    has_rest: bool,
}

impl Selector {
    /// Splits `raw` on its first colon. A selector without a colon is a bare
    /// kind (allowed for transforms such as `bootc`).
    ///
    /// # Errors
    /// An empty kind, or a kind with characters other than `a-z0-9-_`.
    pub fn parse(raw: &str) -> Result<Self> {
        let (kind, has_rest) = match raw.split_once(':') {
            Some((kind, _)) => (kind, true),
            None => (raw, false),
        };
        if kind.is_empty() {
            return Err(Error::usage(format!(
                "selector '{raw}' has no kind (expected KIND:REST)"
            )));
        }
        if kind.starts_with('~') || kind.contains(['/', '.']) {
            return Err(Error::usage(format!(
                "selector '{raw}' has no kind (expected KIND:REST; a path is written rootfs:PATH, oci:PATH...)"
            )));
        }
        if !kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(Error::usage(format!(
                "selector '{raw}': kind '{kind}' may hold only a-z, 0-9, '-' and '_'"
            )));
        }
        Ok(Selector {
            raw: raw.to_string(),
            kind_len: kind.len(),
            has_rest,
        })
    }

    /// The kind before the first colon.
    #[must_use]
    pub fn kind(&self) -> &str {
        &self.raw[..self.kind_len]
    }

    /// Everything after the first colon (empty when there was none).
    #[must_use]
    pub fn rest(&self) -> &str {
        if self.has_rest {
            &self.raw[self.kind_len + 1..]
        } else {
            ""
        }
    }

    /// The selector as typed.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The rest, or a usage error saying what it should hold.
    pub fn require_rest(&self, what: &str) -> Result<&str> {
        let rest = self.rest();
        if rest.is_empty() {
            Err(Error::usage(format!(
                "selector '{}' needs {what} after '{}:'",
                self.raw,
                self.kind()
            )))
        } else {
            Ok(rest)
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// `KEY=VALUE` options of a plugin, in the order given. A key may repeat.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    items: Vec<(String, String)>,
}

impl Options {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses one `KEY=VALUE` (a bare `KEY` means `KEY=true`).
    pub fn push_pair(&mut self, pair: &str) -> Result<()> {
        let (key, value) = pair.split_once('=').unwrap_or((pair, "true"));
        if key.is_empty() {
            return Err(Error::usage(format!(
                "option '{pair}' has no key (expected KEY=VALUE)"
            )));
        }
        self.items.push((key.to_string(), value.to_string()));
        Ok(())
    }

    /// Parses `KEY=VALUE,KEY=VALUE` as written after a transform's kind.
    pub fn parse_list(list: &str) -> Result<Self> {
        let mut out = Options::new();
        for pair in list.split(',').filter(|p| !p.is_empty()) {
            out.push_pair(pair)?;
        }
        Ok(out)
    }

    /// Adds a key and value.
    pub fn push(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.items.push((key.into(), value.into()));
    }

    /// Appends every option of `other`.
    pub fn extend(&mut self, other: &Options) {
        self.items.extend(other.items.iter().cloned());
    }

    /// The last value of `key`.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&str> {
        self.items
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.items
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The last value of `key` parsed as `T`.
    pub fn parse<T: std::str::FromStr>(&self, key: &str, what: &str) -> Result<Option<T>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| Error::usage(format!("option {key}={v}: expected {what}"))),
        }
    }

    /// Every (key, value) pair.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.items.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Refuses any key not in `allowed`, naming the plugin and the valid keys.
    pub fn check_keys(&self, plugin: &str, allowed: &[&str]) -> Result<()> {
        for (key, _) in &self.items {
            if !allowed.contains(&key.as_str()) {
                let valid = if allowed.is_empty() {
                    "it takes none".to_string()
                } else {
                    format!("valid: {}", allowed.join(", "))
                };
                return Err(Error::usage(format!(
                    "{plugin} has no option '{key}' ({valid})"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_the_first_colon_and_prints_back() {
        let s =
            Selector::parse("ostree:/srv/repo:debian/bookworm").expect("the test literal parses");
        assert_eq!(s.kind(), "ostree");
        assert_eq!(s.rest(), "/srv/repo:debian/bookworm");
        assert_eq!(s.to_string(), "ostree:/srv/repo:debian/bookworm");
        let bare = Selector::parse("bootc").expect("the test literal parses");
        assert_eq!(bare.kind(), "bootc");
        assert_eq!(bare.rest(), "");
        assert!(bare.require_rest("a directory").is_err());
    }

    #[test]
    fn malformed_selectors_are_usage_errors() {
        for bad in [":x", "", "Oci:dir", "o ci:x"] {
            let err = Selector::parse(bad).unwrap_err();
            assert!(err.is_usage(), "{bad}: {err}");
        }
    }

    #[test]
    fn options_keep_order_and_repeats() {
        let o = Options::parse_list("label=a=b,label=c=d,quiet").expect("the test literal parses");
        assert_eq!(o.get_all("label").collect::<Vec<_>>(), ["a=b", "c=d"]);
        assert_eq!(o.get("quiet"), Some("true"));
        assert!(o.check_keys("config", &["label"]).is_err());
        assert!(o.check_keys("config", &["label", "quiet"]).is_ok());
        assert!(Options::parse_list("=x").is_err());
    }
}
