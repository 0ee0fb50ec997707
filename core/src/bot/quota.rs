//! Per-tenant quotas on knowledge ingested from chat: bytes of text (kept per source in
//! sled, so a replaced or forgotten source gives its bytes back) and stored chunks.

use crate::store::{KnowledgeStore, TenantScope};

use super::BotError;

/// Bytes ingested per (tenant, source), and the limits.
pub struct Quota {
    bytes: sled::Tree,
    max_bytes: u64,
    max_chunks: usize,
    chunk_size: usize,
}

impl Quota {
    /// Quota bookkeeping in `db`.
    pub fn new(
        db: &sled::Db,
        max_bytes: u64,
        max_chunks: usize,
        chunk_size: usize,
    ) -> Result<Self, sled::Error> {
        Ok(Self {
            bytes: db.open_tree("quota_bytes")?,
            max_bytes,
            max_chunks,
            chunk_size: chunk_size.max(1),
        })
    }

    /// Bytes a tenant has ingested from chat.
    pub fn used_bytes(&self, tenant: &str) -> Result<u64, sled::Error> {
        let mut total = 0;
        for item in self.bytes.scan_prefix(prefix(tenant)) {
            total += decode(&item?.1);
        }
        Ok(total)
    }

    /// Refuses a new version of `source` of `bytes` bytes if it would take the tenant over
    /// either limit; the source's previous version does not count.
    pub async fn check(
        &self,
        store: &dyn KnowledgeStore,
        tenant: &str,
        source: &str,
        bytes: u64,
    ) -> Result<(), BotError> {
        let previous = self
            .bytes
            .get(key(tenant, source))?
            .map_or(0, |v| decode(&v));
        let used = self.used_bytes(tenant)? - previous;
        if used + bytes > self.max_bytes {
            return Err(BotError::Quota(format!(
                "this adds {} KiB, and the team has used {} KiB of its {} KiB",
                bytes.div_ceil(1024),
                used.div_ceil(1024),
                self.max_bytes / 1024
            )));
        }
        let chunks: usize = store
            .sources(&TenantScope::only(tenant))
            .await?
            .iter()
            .filter(|s| s.source != source)
            .map(|s| s.chunks)
            .sum();
        let estimate = (bytes as usize).div_ceil(self.chunk_size);
        if chunks + estimate > self.max_chunks {
            return Err(BotError::Quota(format!(
                "the team has {chunks} of its {} chunks",
                self.max_chunks
            )));
        }
        Ok(())
    }

    /// Records the size of a stored source.
    pub fn record(&self, tenant: &str, source: &str, bytes: u64) -> Result<(), sled::Error> {
        self.bytes
            .insert(key(tenant, source), &bytes.to_be_bytes())?;
        Ok(())
    }

    /// Gives a forgotten source's bytes back.
    pub fn release(&self, tenant: &str, source: &str) -> Result<(), sled::Error> {
        self.bytes.remove(key(tenant, source))?;
        Ok(())
    }
}

fn prefix(tenant: &str) -> Vec<u8> {
    format!("{tenant}\0").into_bytes()
}

fn key(tenant: &str, source: &str) -> Vec<u8> {
    format!("{tenant}\0{source}").into_bytes()
}

fn decode(v: &[u8]) -> u64 {
    v.try_into().map(u64::from_be_bytes).unwrap_or(0)
}
