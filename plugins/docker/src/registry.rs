//! Registry operations on one repository: push an image set, get manifests
//! and blobs, list tags.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use treeport_core::blobs::BlobStore;
use treeport_core::copy::ImageSet;
use treeport_core::digest::Digest;
use treeport_core::error::{Error, Result};
use treeport_core::image::Referrer;
use treeport_core::layout;
use treeport_core::media;
use treeport_core::plugin::RawManifest;
use treeport_core::progress::Context;
use ureq::http::Method;

use crate::client::{Body, Client, ClientOptions, Deadline, encode, transfer_deadline};
use crate::locations::Locations;
use crate::reference::Reference;

/// Blobs up to this size go in one request; larger ones in chunks of it.
pub const CHUNK: u64 = 32 << 20;
/// Blob uploads running at once.
const PARALLEL_UPLOADS: usize = 4;
/// Times a whole blob upload is started again after its session failed.
const UPLOAD_RESTARTS: u32 = 3;

const OCTET: (&str, &str) = ("Content-Type", "application/octet-stream");

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// How one blob reached the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Existing,
    Mounted,
    Uploaded(u64),
    /// Sent while it was encoded.
    Streamed(u64),
}

/// One repository of a registry.
pub struct Registry {
    reference: Reference,
    client: Client,
}

impl Registry {
    pub fn new(reference: Reference, options: ClientOptions) -> Result<Self> {
        Ok(Registry {
            client: Client::new(&reference.registry, options)?,
            reference,
        })
    }

    #[must_use]
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    fn repo(&self) -> &str {
        &self.reference.repository
    }

    fn pull_scope(&self) -> Vec<String> {
        vec![format!("repository:{}:pull", self.repo())]
    }

    fn push_scope(&self) -> Vec<String> {
        vec![format!("repository:{}:pull,push", self.repo())]
    }

    /// Authenticates for pushing, so bad credentials fail before any work.
    pub fn check_push_access(&self) -> Result<()> {
        let mut resp =
            self.client
                .send(&Method::GET, "/v2/", &[], Body::Empty, &self.push_scope())?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(self.client.unexpected("GET /v2/", &mut resp))
        }
    }

    /// Pushes every blob and manifest of `set`, then tags it. Blobs in
    /// `streamed` (digest and size) already reached the registry while they
    /// were encoded. Returns counters: blobs existing, mounted, uploaded
    /// (streamed ones included, and also counted apart), bytes uploaded.
    pub fn push(
        &self,
        set: &ImageSet,
        store: &BlobStore,
        streamed: &HashMap<Digest, u64>,
        ctx: &Context,
    ) -> Result<BTreeMap<String, u64>> {
        let blobs = set.blobs();
        let locations = Mutex::new(Locations::load());
        let task = ctx.progress().task(
            &format!("pushing to {}", self.client.registry()),
            Some(blobs.iter().map(|(_, s)| s).sum()),
        );
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<Result<Outcome>>> = Mutex::new(Vec::new());
        let workers = PARALLEL_UPLOADS.min(blobs.len()).max(1);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    loop {
                        let at = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&(digest, size)) = blobs.get(at) else {
                            break;
                        };
                        let mount_from = locations
                            .lock()
                            .expect("locations lock")
                            .find(self.client.registry(), &digest, self.repo())
                            .or_else(|| self.mountable_origin(ctx, &digest));
                        let r = if streamed.get(&digest) == Some(&size) {
                            Ok(Outcome::Streamed(size))
                        } else {
                            self.push_blob(
                                &digest,
                                size,
                                &store.path(&digest),
                                mount_from.as_deref(),
                            )
                        };
                        if r.is_ok() {
                            task.advance(size);
                        }
                        let failed = r.is_err();
                        results.lock().expect("results lock").push(r);
                        if failed {
                            // Let the other workers finish their blob; take no new one.
                            next.store(blobs.len(), Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        task.finish();
        let mut counters = BTreeMap::new();
        for r in results.into_inner().expect("results lock") {
            let (key, bytes) = match r? {
                Outcome::Existing => ("blobs_existing", 0),
                Outcome::Mounted => ("blobs_mounted", 0),
                Outcome::Uploaded(n) => ("blobs_uploaded", n),
                Outcome::Streamed(n) => {
                    *counters.entry("blobs_streamed".to_string()).or_insert(0) += 1;
                    ("blobs_uploaded", n)
                }
            };
            *counters.entry(key.to_string()).or_insert(0) += 1;
            *counters.entry("bytes_uploaded".to_string()).or_insert(0) += bytes;
        }
        let mut locations = locations.into_inner().expect("locations lock");
        for (d, _) in &blobs {
            locations.add(self.client.registry(), d, self.repo());
        }
        locations.save();

        let tags = self.reference.push_tags();
        let top = set.top();
        if set.index.is_some() {
            for m in &set.manifests {
                self.put_manifest(&m.raw.digest.to_string(), &m.raw)?;
            }
        }
        if tags.is_empty() {
            self.put_manifest(&top.digest.to_string(), top)?;
        }
        for tag in &tags {
            self.put_manifest(tag, top)?;
        }
        counters.insert(
            "manifests".to_string(),
            (set.manifests.len() + usize::from(set.index.is_some())) as u64,
        );
        Ok(counters)
    }

    /// A repository of this registry the run knows holds `digest` (the
    /// shared layer cache's), to mount from.
    fn mountable_origin(&self, ctx: &Context, digest: &Digest) -> Option<String> {
        let origin = ctx.blob_origin(digest)?;
        let r = Reference::parse(origin.strip_prefix("docker:")?).ok()?;
        (r.registry == self.client.registry() && r.repository != self.repo())
            .then_some(r.repository)
    }

    fn blob_exists(&self, digest: &Digest) -> Result<bool> {
        let path = format!("/v2/{}/blobs/{digest}", self.repo());
        let resp = self
            .client
            .send(&Method::HEAD, &path, &[], Body::Empty, &self.push_scope())?;
        Ok(resp.status().is_success())
    }

    fn push_blob(
        &self,
        digest: &Digest,
        size: u64,
        file: &Path,
        mount_from: Option<&str>,
    ) -> Result<Outcome> {
        if self.blob_exists(digest)? {
            return Ok(Outcome::Existing);
        }
        let mut restarts = 0;
        loop {
            let Some(location) = self.start_upload(mount_from.map(|from| (digest, from)))? else {
                return Ok(Outcome::Mounted);
            };
            match self.upload(&location, digest, size, file) {
                Ok(()) => return Ok(Outcome::Uploaded(size)),
                // The session broke (a chunk went wrong): start the blob again.
                Err(_) if restarts < UPLOAD_RESTARTS => restarts += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// Starts an upload session, or mounts the blob from another repository
    /// (then returns `None`).
    fn start_upload(&self, mount: Option<(&Digest, &str)>) -> Result<Option<String>> {
        let mut scopes = self.push_scope();
        let path = match mount {
            Some((digest, from)) => {
                scopes.push(format!("repository:{from}:pull"));
                format!(
                    "/v2/{}/blobs/uploads/?mount={}&from={}",
                    self.repo(),
                    encode(&digest.to_string()),
                    encode(from)
                )
            }
            None => format!("/v2/{}/blobs/uploads/", self.repo()),
        };
        let mut resp = self
            .client
            .send(&Method::POST, &path, &[], Body::Empty, &scopes)?;
        match resp.status().as_u16() {
            201 if mount.is_some() => Ok(None),
            202 => Ok(Some(location(&resp).ok_or_else(|| {
                Error::invalid(format!(
                    "registry {}: upload started without a Location",
                    self.client.registry()
                ))
            })?)),
            _ => Err(self.client.unexpected(
                &format!("POST /v2/{}/blobs/uploads/", self.repo()),
                &mut resp,
            )),
        }
    }

    /// Sends the blob to an upload session: one `PUT`, or `PATCH`es of
    /// [`CHUNK`] bytes then a closing PUT.
    fn upload(&self, session: &str, digest: &Digest, size: u64, file: &Path) -> Result<()> {
        let scopes = self.push_scope();
        let mut session = session.to_string();
        let mut body = Body::File {
            path: file,
            offset: 0,
            len: size,
        };
        if size > CHUNK {
            let mut offset = 0;
            while offset < size {
                let len = CHUNK.min(size - offset);
                let range = format!("{offset}-{}", offset + len - 1);
                let headers = [OCTET, ("Content-Range", range.as_str())];
                let mut resp = self.client.send(
                    &Method::PATCH,
                    &session,
                    &headers,
                    Body::File {
                        path: file,
                        offset,
                        len,
                    },
                    &scopes,
                )?;
                if resp.status().as_u16() != 202 {
                    return Err(self.client.unexpected("PATCH upload chunk", &mut resp));
                }
                session = location(&resp).unwrap_or(session);
                offset += len;
            }
            body = Body::Empty;
        }
        self.close_upload(&session, digest, body)
    }

    /// Ends an upload session with the blob's digest (and its last bytes).
    fn close_upload(&self, session: &str, digest: &Digest, body: Body<'_>) -> Result<()> {
        let sep = if session.contains('?') { '&' } else { '?' };
        let put = format!("{session}{sep}digest={}", encode(&digest.to_string()));
        let mut resp = self
            .client
            .send(&Method::PUT, &put, &[OCTET], body, &self.push_scope())?;
        if resp.status().as_u16() == 201 {
            Ok(())
        } else {
            Err(self
                .client
                .unexpected(&format!("PUT blob {digest}"), &mut resp))
        }
    }

    /// Uploads one blob as it is produced: a session, streamed `PATCH`
    /// requests of the bytes `body` yields, then the closing `PUT` with the
    /// digest `body` ends with. Returns the blob's digest and size once the
    /// registry has accepted it.
    pub(crate) fn stream_blob(&self, body: &mut crate::stream::Pieces) -> Result<(Digest, u64)> {
        let mut session = self.start_upload(None)?.expect("no mount asked for");
        while body.next_span().map_err(|e| Error::Other(e.to_string()))? {
            let mut resp = self.client.send_stream(
                &Method::PATCH,
                &session,
                &[OCTET],
                body,
                &self.push_scope(),
            )?;
            if resp.status().as_u16() != 202 {
                return Err(self.client.unexpected("PATCH streamed upload", &mut resp));
            }
            session = location(&resp).unwrap_or(session);
        }
        let (digest, size) = body.end().ok_or_else(|| {
            Error::invalid(format!(
                "registry {}: the layer stream ended early",
                self.client.registry()
            ))
        })?;
        self.close_upload(&session, &digest, Body::Empty)?;
        Ok((digest, size))
    }

    fn put_manifest(&self, reference: &str, raw: &RawManifest) -> Result<()> {
        self.put_manifest_subject(reference, raw).map(drop)
    }

    /// PUTs a manifest; true when the registry answered with `OCI-Subject`
    /// (it keeps referrers itself: the Referrers API).
    fn put_manifest_subject(&self, reference: &str, raw: &RawManifest) -> Result<bool> {
        let path = format!("/v2/{}/manifests/{reference}", self.repo());
        let headers = [("Content-Type", raw.media_type.as_str())];
        let mut resp = self.client.send(
            &Method::PUT,
            &path,
            &headers,
            Body::Bytes(&raw.bytes),
            &self.push_scope(),
        )?;
        if resp.status().as_u16() == 201 || resp.status().is_success() {
            Ok(resp.headers().contains_key("oci-subject"))
        } else {
            Err(self
                .client
                .unexpected(&format!("PUT manifest {reference}"), &mut resp))
        }
    }

    /// Pushes artifacts that refer to the image `subject` (an SBOM): their
    /// blobs, their manifests by digest and, unless the registry keeps
    /// referrers itself (it answered `OCI-Subject`), the referrers tag
    /// schema's index under `sha256-<hex>`, merged with what it listed.
    /// Returns how many artifacts were pushed.
    pub fn push_referrers(
        &self,
        referrers: &[Referrer],
        store: &BlobStore,
        subject: &Digest,
    ) -> Result<u64> {
        let mut api = true;
        for r in referrers {
            for (digest, size) in &r.blobs {
                self.push_blob(digest, *size, &store.path(digest), None)?;
            }
            api &= self.put_manifest_subject(&r.raw.digest.to_string(), &r.raw)?;
        }
        if !api {
            let tag = layout::referrers_tag(subject);
            let mut listed = self.listed_referrers(&tag)?;
            for r in referrers {
                if !listed
                    .iter()
                    .any(|d| d.digest().to_string() == r.raw.digest.to_string())
                {
                    listed.push(layout::referrer_descriptor(r)?);
                }
            }
            self.put_manifest(&tag, &layout::referrers_index(listed)?)?;
        }
        Ok(referrers.len() as u64)
    }

    /// What the referrers tag `tag` lists (nothing when there is no tag).
    fn listed_referrers(&self, tag: &str) -> Result<Vec<oci_spec::image::Descriptor>> {
        let Some(raw) = self.find_manifest(tag)? else {
            return Ok(Vec::new());
        };
        let index: oci_spec::image::ImageIndex =
            serde_json::from_slice(&raw.bytes).map_err(|e| {
                Error::invalid(format!("registry {}: {tag}: {e}", self.client.registry()))
            })?;
        Ok(index.manifests().clone())
    }

    /// The manifest tagged `tag`, or `None` when the tag does not exist.
    pub fn find_manifest(&self, tag: &str) -> Result<Option<RawManifest>> {
        let path = format!("/v2/{}/manifests/{tag}", self.repo());
        let resp = self.client.send(
            &Method::HEAD,
            &path,
            &[("Accept", ACCEPT)],
            Body::Empty,
            &self.pull_scope(),
        )?;
        if resp.status().as_u16() == 404 {
            return Ok(None);
        }
        self.get_manifest(tag).map(Some)
    }

    /// Pushes a signature image: its new blobs (from `store`), then its
    /// manifest under `tag`.
    pub fn push_tagged(
        &self,
        tag: &str,
        raw: &RawManifest,
        blobs: &[(Digest, u64)],
        store: &BlobStore,
    ) -> Result<()> {
        for (digest, size) in blobs {
            self.push_blob(digest, *size, &store.path(digest), None)?;
        }
        self.put_manifest(tag, raw)
    }

    /// The artifacts that refer to `subject`: through the Referrers API
    /// where the registry has it, else the referrers tag.
    pub fn referrers(&self, subject: &Digest) -> Result<Vec<oci_spec::image::Descriptor>> {
        let path = format!("/v2/{}/referrers/{subject}", self.repo());
        let mut resp = self.client.send(
            &Method::GET,
            &path,
            &[("Accept", media::OCI_INDEX)],
            Body::Empty,
            &self.pull_scope(),
        )?;
        if resp.status().as_u16() == 200 {
            let what = format!(
                "registry {}: referrers of {subject}",
                self.client.registry()
            );
            let bytes = media::read_limited(resp.into_body().into_reader(), &what)?;
            let index: oci_spec::image::ImageIndex = serde_json::from_slice(&bytes)
                .map_err(|e| Error::invalid(format!("{what}: {e}")))?;
            return Ok(index.manifests().clone());
        }
        if resp.status().as_u16() != 404 {
            return Err(self
                .client
                .unexpected(&format!("GET referrers of {subject}"), &mut resp));
        }
        self.listed_referrers(&layout::referrers_tag(subject))
    }

    /// Fetches a manifest or index by tag or digest and checks its digest.
    pub fn get_manifest(&self, reference: &str) -> Result<RawManifest> {
        let path = format!("/v2/{}/manifests/{reference}", self.repo());
        let mut resp = self.client.send(
            &Method::GET,
            &path,
            &[("Accept", ACCEPT)],
            Body::Empty,
            &self.pull_scope(),
        )?;
        match resp.status().as_u16() {
            200 => {}
            404 => {
                return Err(Error::invalid(format!(
                    "registry {}: no manifest '{reference}' in {}",
                    self.client.registry(),
                    self.repo()
                )));
            }
            _ => {
                return Err(self
                    .client
                    .unexpected(&format!("GET manifest {reference}"), &mut resp));
            }
        }
        let header_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        let claimed = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let what = format!("registry {}: manifest {reference}", self.client.registry());
        let bytes = media::read_limited(resp.into_body().into_reader(), &what)?;
        let digest = Digest::of(&bytes);
        let expected = match reference.parse::<Digest>() {
            Ok(d) => Some(d),
            Err(_) => claimed.as_deref().and_then(|c| c.parse().ok()),
        };
        if let Some(expected) = expected
            && expected != digest
        {
            return Err(Error::invalid(format!(
                "{what}: content has digest {digest}, not {expected}"
            )));
        }
        let media_type = media::sniff_media_type(&bytes)
            .or(header_type)
            .filter(|m| media::is_index(m) || media::is_manifest(m))
            .ok_or_else(|| Error::invalid(format!("{what}: not an image manifest or index")))?;
        Ok(RawManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// Streams a blob (the caller checks its digest). The transfer must end
    /// by a deadline set from the size the registry announces.
    pub fn get_blob(&self, digest: &Digest) -> Result<Box<dyn Read + '_>> {
        let path = format!("/v2/{}/blobs/{digest}", self.repo());
        let mut resp = self
            .client
            .send_for_blob(&Method::GET, &path, &self.pull_scope())?;
        if resp.status().as_u16() != 200 {
            return Err(self
                .client
                .unexpected(&format!("GET blob {digest}"), &mut resp));
        }
        // Without a length, the largest layer a registry usually holds.
        let length = resp
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(16 << 30);
        Ok(Box::new(Deadline::new(
            resp.into_body().into_reader(),
            transfer_deadline(length),
            format!("registry {}: blob {digest}", self.client.registry()),
        )))
    }

    /// Every tag of the repository, following pagination. A `Link` to
    /// the next page must stay on the registry and may not repeat; the list
    /// is bounded (10,000 pages, 64 MiB of names).
    pub fn tags(&self) -> Result<Vec<String>> {
        const MAX_PAGES: usize = 10_000;
        const MAX_BYTES: usize = 64 << 20;
        let registry = self.client.registry().to_string();
        let mut out = Vec::new();
        let mut bytes_seen = 0usize;
        let mut visited = std::collections::HashSet::new();
        let mut next = Some(format!("/v2/{}/tags/list?n=1000", self.repo()));
        while let Some(path) = next.take() {
            if !visited.insert(path.clone()) {
                return Err(Error::invalid(format!(
                    "registry {registry}: the tag list links back to a page it gave already"
                )));
            }
            if visited.len() > MAX_PAGES {
                return Err(Error::invalid(format!(
                    "registry {registry}: the tag list runs past {MAX_PAGES} pages"
                )));
            }
            let mut resp =
                self.client
                    .send(&Method::GET, &path, &[], Body::Empty, &self.pull_scope())?;
            if resp.status().as_u16() != 200 {
                return Err(self.client.unexpected("GET tags/list", &mut resp));
            }
            next = resp
                .headers()
                .get("link")
                .and_then(|v| v.to_str().ok())
                .and_then(|l| l.split(';').next())
                .map(|l| {
                    l.trim()
                        .trim_start_matches('<')
                        .trim_end_matches('>')
                        .to_string()
                })
                .map(|link| self.same_registry_path(&link))
                .transpose()?;
            let bytes = media::read_limited(resp.into_body().into_reader(), "tag list")?;
            bytes_seen += bytes.len();
            if bytes_seen > MAX_BYTES {
                return Err(Error::invalid(format!(
                    "registry {registry}: the tag list is larger than {} MiB",
                    MAX_BYTES >> 20
                )));
            }
            let page: Page = serde_json::from_slice(&bytes)
                .map_err(|e| Error::invalid(format!("registry {registry}: tag list: {e}")))?;
            out.extend(page.tags.unwrap_or_default());
        }
        Ok(out)
    }

    /// The path of a `Link` the registry gave: a relative one as it is, an
    /// absolute one only when it names the registry itself (as
    /// containers/image follows them).
    fn same_registry_path(&self, link: &str) -> Result<String> {
        if link.starts_with('/') {
            return Ok(link.to_string());
        }
        let registry = self.client.registry();
        let rest = link
            .split_once("://")
            .map(|(_, rest)| rest)
            .filter(|rest| {
                rest.split('/')
                    .next()
                    .is_some_and(|authority| authority.eq_ignore_ascii_case(registry))
            })
            .and_then(|rest| rest.find('/').map(|i| &rest[i..]));
        rest.map(str::to_string).ok_or_else(|| {
            Error::invalid(format!(
                "registry {registry}: the tag list links to another place ({}); not followed",
                link.split('?').next().unwrap_or(link)
            ))
        })
    }
}

/// One page of a tag list.
#[derive(serde::Deserialize)]
struct Page {
    tags: Option<Vec<String>>,
}

fn location(resp: &ureq::http::Response<ureq::Body>) -> Option<String> {
    resp.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}
