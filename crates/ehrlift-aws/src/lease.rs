//! Leases: an object (`_ehrlift/run.lock` for an unsharded run, one per shard of a
//! sharded run) created only if absent, renewed by its holder with `If-Match`, and taken
//! over only when expired or left by a dead process of this host. A holder that loses it
//! stops committing.

use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use ehrlift_load::StoreError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config;
use crate::error::Failure;
use crate::s3::{Cond, Inner, Sse};

/// Key of an unsharded run's lease object, under the store's prefix.
pub use ehrlift_load::LOCK_KEY;
/// How long a lease lasts without renewal.
const TTL: Duration = Duration::from_secs(60);
/// How often the holder renews it.
const RENEW_EVERY: Duration = Duration::from_secs(20);

/// The lease object's content.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LeaseBody {
    /// Random id of this holder.
    owner: String,
    host: String,
    pid: u32,
    acquired_at: String,
    expires_at: String,
}

impl LeaseBody {
    fn new() -> Self {
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).expect("the OS random source is available");
        let now = Utc::now();
        LeaseBody {
            owner: hex::encode(id),
            host: host_name(),
            pid: std::process::id(),
            acquired_at: rfc3339(now),
            expires_at: rfc3339(now + TTL),
        }
    }

    fn expires(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.expires_at).ok().map(|t| t.with_timezone(&Utc))
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// This machine's host name (Linux), for telling a dead local holder from a remote one.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into())
}

/// Whether process `pid` of this machine is alive.
fn pid_alive(pid: u32) -> bool {
    pid == std::process::id() || std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The run lock of an S3 destination, held until dropped. A thread renews it every 20 s;
/// dropping stops the renewal and deletes the lease object if it is still this one.
pub struct S3Lease {
    state: Arc<State>,
    stop: Option<mpsc::Sender<()>>,
    renewer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for S3Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Lease").field("url", &self.state.url()).finish_non_exhaustive()
    }
}

struct State {
    inner: Arc<Inner>,
    full_key: String,
    sse: Sse,
    /// The lease as last written, and its ETag.
    held: Mutex<(LeaseBody, String)>,
}

impl State {
    fn url(&self) -> String {
        self.inner.url_of(&self.full_key)
    }

    fn write(&self, body: &LeaseBody, cond: Cond) -> Result<String, Failure> {
        let bytes = serde_json::to_vec(body).expect("a lease serializes");
        let digest = Sha256::digest(&bytes);
        self.inner.put_raw(&self.full_key, &self.sse, Bytes::from(bytes), &digest, cond)
    }

    /// Extends the lease by the TTL; marks it lost if another run replaced it.
    fn renew(&self) -> Result<(), StoreError> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if self.inner.lease_lost.load(Ordering::SeqCst) {
            return Err(lost(&self.inner, "it was lost earlier"));
        }
        let mut body = held.0.clone();
        body.expires_at = rfc3339(Utc::now() + TTL);
        match self.write(&body, Cond::Match(held.1.clone())) {
            Ok(etag) => {
                *held = (body, etag);
                Ok(())
            }
            Err(f) if f.is_precondition_failed() || f.is_not_found() => {
                self.inner.lease_lost.store(true, Ordering::SeqCst);
                tracing::error!(lock = %self.url(), "run lease lost: another run replaced the lock object; this run commits nothing more");
                Err(lost(&self.inner, "another run replaced the lock object"))
            }
            Err(f) => {
                // Past our own expiry another run may have taken over: stop committing.
                if held.0.expires().is_none_or(|t| t <= Utc::now()) {
                    self.inner.lease_lost.store(true, Ordering::SeqCst);
                    tracing::error!(lock = %self.url(), error = %f.message, "run lease expired while it could not be renewed");
                    return Err(lost(&self.inner, "it expired while renewal failed"));
                }
                tracing::warn!(lock = %self.url(), error = %f.message, "could not renew the run lease; retrying");
                Err(f.store("renew lease", self.url()))
            }
        }
    }
}

fn lost(inner: &Inner, why: &str) -> StoreError {
    StoreError::Locked(format!("{} (lease lost: {why}; this run writes nothing more)", inner.root_url()))
}

/// Takes the lease `key` of the store.
pub(crate) fn acquire(inner: &Arc<Inner>, key: &str) -> Result<S3Lease, StoreError> {
    let full_key = inner.full_key(key)?;
    let sse = inner.sse(key)?;
    let state = State { inner: inner.clone(), full_key, sse, held: Mutex::new((LeaseBody::new(), String::new())) };
    let url = state.url();
    let mine = state.held.lock().unwrap_or_else(|p| p.into_inner()).0.clone();
    // A lock deleted between our create and our read is retried a few times.
    for _ in 0..3 {
        match state.write(&mine, Cond::Absent) {
            Ok(etag) => return Ok(start(state, mine, etag)),
            Err(f) if f.is_precondition_failed() => {}
            Err(f) => return Err(f.store("create lease", url)),
        }
        let Some((bytes, etag)) = inner.get_bytes(&state.full_key).map_err(|f| f.store("read lease", url.clone()))? else { continue };
        let Ok(theirs) = serde_json::from_slice::<LeaseBody>(&bytes) else {
            return Err(StoreError::Locked(format!(
                "{} (the lock object {url} is not an ehrlift lease; delete it if no ehrlift run uses this destination)",
                inner.root_url()
            )));
        };
        let expired = theirs.expires().is_none_or(|t| t <= Utc::now());
        let dead_here = theirs.host == mine.host && !pid_alive(theirs.pid);
        if !expired && !dead_here {
            return Err(StoreError::Locked(format!(
                "{} (lease held by pid {} on host {} since {}; it expires at {} unless renewed)",
                inner.root_url(),
                theirs.pid,
                theirs.host,
                theirs.acquired_at,
                theirs.expires_at
            )));
        }
        let why = if expired { "expired" } else { "left by a process of this host that is gone" };
        match state.write(&mine, Cond::Match(etag)) {
            Ok(etag) => {
                tracing::warn!(lock = %url, holder_pid = theirs.pid, holder_host = %theirs.host, "took over a run lease {why}");
                return Ok(start(state, mine, etag));
            }
            Err(f) if f.is_precondition_failed() || f.is_not_found() => {
                return Err(StoreError::Locked(format!("{} (another run took over the {why} lease first)", inner.root_url())));
            }
            Err(f) => return Err(f.store("take over lease", url)),
        }
    }
    Err(StoreError::Locked(format!("{} (the lock object {url} keeps appearing and disappearing)", inner.root_url())))
}

/// Records the lease as held and starts its renewal thread.
fn start(state: State, body: LeaseBody, etag: String) -> S3Lease {
    *state.held.lock().unwrap_or_else(|p| p.into_inner()) = (body, etag);
    state.inner.lease_lost.store(false, Ordering::SeqCst);
    let state = Arc::new(state);
    let (stop, stopped) = mpsc::channel::<()>();
    let renewing = state.clone();
    let renewer = std::thread::Builder::new()
        .name("ehrlift-lease".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(RENEW_EVERY) {
                if renewing.renew().is_err() && renewing.inner.lease_lost.load(Ordering::SeqCst) {
                    break;
                }
            }
        })
        .ok();
    if renewer.is_none() {
        tracing::warn!(lock = %state.url(), "could not start the lease renewal thread; the lease expires in 60 s");
    }
    S3Lease { state, stop: Some(stop), renewer }
}

impl S3Lease {
    /// Renews the lease now, as the renewal thread does every 20 s. Fails with
    /// [`StoreError::Locked`] if another run replaced it (then the store refuses every
    /// further commit).
    #[doc(hidden)]
    pub fn renew_now(&self) -> Result<(), StoreError> {
        self.state.renew()
    }
}

impl Drop for S3Lease {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.renewer.take() {
            let _ = t.join();
        }
        if self.state.inner.lease_lost.load(Ordering::SeqCst) {
            return;
        }
        let etag = self.state.held.lock().unwrap_or_else(|p| p.into_inner()).1.clone();
        let inner = &self.state.inner;
        // Delete only our own lease: compare the ETag first (a store that ignores
        // If-Match on DELETE), then delete with If-Match (closes the race where honoured).
        match inner.head_raw(&self.state.full_key) {
            Ok(Some(h)) if h.e_tag() == Some(etag.as_str()) => {}
            Ok(_) => return,
            Err(f) => {
                tracing::warn!(lock = %self.state.url(), error = %f.message, "could not release the run lease; it expires in 60 s");
                return;
            }
        }
        let req = inner.s3.delete_object().bucket(&inner.bucket).key(&self.state.full_key).if_match(etag);
        if let Err(e) = config::block_on(req.send()) {
            let f = Failure::of(&e);
            if !f.is_precondition_failed() && !f.is_not_found() {
                tracing::warn!(lock = %self.state.url(), error = %f.message, "could not release the run lease; it expires in 60 s");
            }
        }
    }
}
