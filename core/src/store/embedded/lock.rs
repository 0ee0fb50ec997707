//! One writer per data dir: `lore.lock` in the data dir, held with an exclusive OS lock
//! (`flock`) by the process that has the embedded store open, and holding who that is
//! (pid, command line, since when, and the HTTP address once `lore serve` listens).
//!
//! The OS lock is the truth: it is released when the holder exits, however it exits, so a
//! file left by a dead process is simply taken over. The text only explains a refusal. It
//! lives outside `knowledge/`, so the store directory can be moved aside (see `recover`)
//! while it is held.

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::store::{StoreError, StoreErrorKind};

/// The lock file's name in the data dir.
pub const LOCK_FILE: &str = "lore.lock";

/// Who holds a data dir.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    /// The holder's command line, arguments joined by spaces.
    pub command: String,
    /// When it took the data dir, in Unix seconds.
    pub since: u64,
    /// Where its HTTP API listens (`lore serve` with `[http] listen`), once it listens.
    #[serde(default)]
    pub http: Option<String>,
}

impl Holder {
    /// This process, now.
    fn this_process() -> Self {
        let command = std::env::args_os()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        Self {
            pid: std::process::id(),
            command,
            since: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            http: None,
        }
    }

    /// When it took the data dir, as an HTTP date (UTC).
    pub fn since_text(&self) -> String {
        httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(self.since))
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} ({}), since {}",
            self.pid,
            self.command,
            self.since_text()
        )?;
        match &self.http {
            Some(address) => write!(f, ", HTTP API on {address}"),
            None => write!(f, ", no HTTP API"),
        }
    }
}

/// A data dir another process holds.
#[derive(Debug, Clone)]
pub struct InUse {
    pub data_dir: PathBuf,
    /// None when its lock file could not be read (it was being written, or is not lore's).
    pub holder: Option<Holder>,
}

impl std::fmt::Display for InUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "data dir {} is in use by ", self.data_dir.display())?;
        match &self.holder {
            Some(holder) => write!(f, "another lore process: {holder}")?,
            None => write!(f, "another lore process")?,
        }
        write!(
            f,
            "; one lore process uses a data dir at a time (nothing was changed): stop that one"
        )?;
        match self.holder.as_ref().and_then(|h| h.http.as_ref()) {
            Some(_) => write!(f, ", or send the request to its HTTP API"),
            None => Ok(()),
        }
    }
}

/// The held lock; released when dropped (or when the process ends, however it ends).
#[derive(Debug)]
pub struct DataDirLock {
    path: PathBuf,
    file: File,
    holder: Mutex<Holder>,
}

impl DataDirLock {
    /// Takes `data_dir`'s lock without waiting, creating the directory if needed, and writes
    /// this process into it. A data dir held by a live process is a [`StoreError::InUse`].
    pub fn acquire(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join(LOCK_FILE);
        let failed = |what: &str, e: std::io::Error| {
            StoreError::open(
                data_dir.display().to_string(),
                io_kind(&e),
                format!("{what} {}: {e}", path.display()),
            )
        };
        std::fs::create_dir_all(data_dir).map_err(|e| failed("creating the directory of", e))?;
        let mut file = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| failed("opening", e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(StoreError::InUse(Box::new(InUse {
                    data_dir: data_dir.to_owned(),
                    holder: read_holder(&mut file),
                })));
            }
            Err(TryLockError::Error(e)) => return Err(failed("locking", e)),
        }
        if let Some(old) = read_text(&mut file)
            .ok()
            .and_then(|t| serde_json::from_str::<Holder>(&t).ok())
        {
            tracing::info!(
                lock = %path.display(),
                pid = old.pid,
                command = %old.command,
                "taking over the data dir from a lore process that is no longer running"
            );
        }
        let lock = Self {
            path: path.clone(),
            file,
            holder: Mutex::new(Holder::this_process()),
        };
        // The OS lock is what keeps a second process out; the text only explains it, so a
        // full disk (the text cannot be written) still lets this process read the store.
        if let Err(e) = lock.write() {
            tracing::warn!(lock = %lock.path.display(), error = %e, "could not record this process in the lock file");
        }
        Ok(lock)
    }

    /// Records where this process's HTTP API listens, for the message a second process gets.
    pub fn record_http(&self, address: &str) -> std::io::Result<()> {
        self.holder.lock().unwrap_or_else(|e| e.into_inner()).http = Some(address.to_owned());
        self.write()
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&self) -> std::io::Result<()> {
        let holder = self
            .holder
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let text = serde_json::to_string(&holder).expect("holder serialises") + "\n";
        let mut file = &self.file;
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(text.as_bytes())?;
        file.sync_data()
    }
}

impl Drop for DataDirLock {
    fn drop(&mut self) {
        // Emptied so a later reader does not mistake a finished process for a holder; the
        // OS lock goes with the file handle.
        let _ = self.file.set_len(0);
    }
}

fn read_text(file: &mut File) -> std::io::Result<String> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_string(&mut text)?;
    Ok(text)
}

/// The holder a held lock file names. The holder writes it right after taking the lock, so
/// an empty or half-written file is read again a few times before giving up.
fn read_holder(file: &mut File) -> Option<Holder> {
    for _ in 0..50 {
        if let Ok(holder) = read_text(file).map(|t| serde_json::from_str::<Holder>(&t)) {
            match holder {
                Ok(holder) => return Some(holder),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
    None
}

/// The store error kind of an I/O failure around the lock.
fn io_kind(e: &std::io::Error) -> StoreErrorKind {
    match e.kind() {
        std::io::ErrorKind::StorageFull => StoreErrorKind::NoSpace,
        _ => StoreErrorKind::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_data_dir_names_its_holder_and_is_taken_over_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        first.record_http("127.0.0.1:8080").unwrap();
        let err = DataDirLock::acquire(dir.path()).expect_err("a held data dir is refused");
        assert_eq!(err.kind(), StoreErrorKind::Busy);
        let StoreError::InUse(in_use) = &err else {
            panic!("{err:?}")
        };
        let holder = in_use.holder.as_ref().expect("the holder is named");
        assert_eq!(holder.pid, std::process::id());
        assert_eq!(holder.http.as_deref(), Some("127.0.0.1:8080"));
        let text = err.to_string();
        assert!(
            text.contains(&format!("pid {}", std::process::id()))
                && text.contains("127.0.0.1:8080"),
            "{text}"
        );
        drop(first);
        // What a process killed before it could empty the file leaves behind.
        let stale = Holder {
            pid: 999_999,
            command: "lore ingest docs".into(),
            since: 1,
            http: None,
        };
        std::fs::write(
            dir.path().join(LOCK_FILE),
            serde_json::to_string(&stale).unwrap(),
        )
        .unwrap();
        let second = DataDirLock::acquire(dir.path()).expect("a stale file is taken over");
        let text = std::fs::read_to_string(second.path()).unwrap();
        let now: Holder = serde_json::from_str(&text).unwrap();
        assert_eq!(now.pid, std::process::id());
        assert_eq!(now.http, None);
    }
}
