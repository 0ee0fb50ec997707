//! A collection spread over a Qdrant cluster: the layout lore asks for when it creates one
//! (`[store] shard_number`, `replication_factor`, `write_consistency_factor`), the bounded
//! wait for enough peers to hold every replica, the start-up refusal of a collection less
//! replicated than configured, and the shards and replicas `lore stats` shows.
//!
//! Qdrant's gRPC API has no call listing the cluster's peers (only REST `/cluster` does),
//! so the peers are counted where they show: in the collection's own cluster info. A
//! collection created while too few peers had joined gets fewer replicas than asked, and
//! Qdrant never adds them later; lore therefore drops such a collection it has just
//! created (empty, its own) and creates it again once more peers have joined, until
//! `peer_wait_secs` have passed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use qdrant_client::qdrant::{
    CollectionClusterInfoRequest, CollectionExistsRequest, CollectionInfo, DeleteCollection,
    ReplicaState,
};

use super::QdrantStore;
use super::errors::{describe_error, error_kind};
use crate::store::{ClusterStats, ReplicaStats, ShardStats, StoreErrorKind};

/// How long to wait between two looks at the cluster while peers join.
const PEER_POLL: Duration = Duration::from_millis(500);

/// Why a collection cannot be used: the kind, and what to do.
type Refusal = (StoreErrorKind, String);

/// How lore lays out a collection it creates (`[store]`, Qdrant's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CollectionLayout {
    /// None: Qdrant's default, one shard per peer at creation.
    pub shard_number: Option<u32>,
    /// Replicas of every shard; a collection with fewer is refused at start.
    pub replication_factor: u32,
    /// Replicas that must acknowledge a write.
    pub write_consistency_factor: u32,
    /// How long to wait, before creating the collection, for enough peers.
    pub peer_wait: Duration,
}

impl Default for CollectionLayout {
    /// One node: Qdrant's defaults.
    fn default() -> Self {
        Self {
            shard_number: None,
            replication_factor: 1,
            write_consistency_factor: 1,
            peer_wait: Duration::from_secs(10),
        }
    }
}

/// Qdrant's name of a replica state ("Active", "Dead", ...).
fn state_name(state: i32) -> String {
    ReplicaState::try_from(state).map_or_else(
        |_| format!("Unknown({state})"),
        |s| s.as_str_name().to_owned(),
    )
}

/// The collection's shards and their replicas, by shard id, replicas by peer id.
pub(super) fn shards_of(
    peer_id: u64,
    local: impl IntoIterator<Item = (u32, i32)>,
    remote: impl IntoIterator<Item = (u32, u64, i32)>,
) -> Vec<ShardStats> {
    let mut shards: BTreeMap<u32, Vec<ReplicaStats>> = BTreeMap::new();
    for (shard, state) in local {
        shards.entry(shard).or_default().push(ReplicaStats {
            peer: peer_id,
            state: state_name(state),
        });
    }
    for (shard, peer, state) in remote {
        shards.entry(shard).or_default().push(ReplicaStats {
            peer,
            state: state_name(state),
        });
    }
    shards
        .into_iter()
        .map(|(shard, mut replicas)| {
            replicas.sort_by_key(|r| r.peer);
            ShardStats { shard, replicas }
        })
        .collect()
}

/// Distinct peers holding a replica of some shard.
fn peers_of(shards: &[ShardStats]) -> usize {
    shards
        .iter()
        .flat_map(|s| s.replicas.iter().map(|r| r.peer))
        .collect::<BTreeSet<_>>()
        .len()
}

/// The shards with fewer than `wanted` replicas (in any state: a replica on a node that is
/// down still exists and comes back with it), in words; None when every shard has enough.
pub(super) fn under_replicated(shards: &[ShardStats], wanted: u32) -> Option<String> {
    let short: Vec<String> = shards
        .iter()
        .filter(|s| (s.replicas.len() as u32) < wanted)
        .map(|s| {
            let n = s.replicas.len();
            format!(
                "shard {} has {n} replica{}",
                s.shard,
                if n == 1 { "" } else { "s" }
            )
        })
        .collect();
    if short.is_empty() {
        return None;
    }
    let shown = short.len().min(3);
    let more = short.len() - shown;
    let mut text = short[..shown].join(", ");
    if more > 0 {
        text.push_str(&format!(" and {more} more"));
    }
    Some(text)
}

impl QdrantStore {
    /// The collection's shards and replicas as the server reports them.
    pub(super) async fn shards(&self) -> Result<(u64, Vec<ShardStats>), Refusal> {
        let request = CollectionClusterInfoRequest {
            collection_name: self.collection.clone(),
        };
        let info = self
            .call(|c| {
                let request = request.clone();
                async move { c.collection_cluster_info(request).await }
            })
            .await
            .map_err(|e| {
                (
                    error_kind(&e),
                    format!("reading the collection's shards: {}", describe_error(&e)),
                )
            })?;
        let shards = shards_of(
            info.peer_id,
            info.local_shards.iter().map(|s| (s.shard_id, s.state)),
            info.remote_shards
                .iter()
                .map(|s| (s.shard_id, s.peer_id, s.state)),
        );
        Ok((info.peer_id, shards))
    }

    /// Shards, replicas and the collection's layout parameters, for `lore stats`.
    pub(super) async fn cluster_stats(
        &self,
        info: &CollectionInfo,
    ) -> Result<ClusterStats, Refusal> {
        let params = info.config.as_ref().and_then(|c| c.params.as_ref());
        let (peer_id, shards) = self.shards().await?;
        Ok(ClusterStats {
            peer_id,
            shard_number: params.map_or(shards.len() as u32, |p| p.shard_number),
            replication_factor: params.and_then(|p| p.replication_factor).unwrap_or(1),
            write_consistency_factor: params.and_then(|p| p.write_consistency_factor).unwrap_or(1),
            peers: peers_of(&shards),
            shards,
        })
    }

    /// Refuses a collection with a shard less replicated than `[store] replication_factor`.
    pub(super) async fn check_replication(&self) -> Result<(), Refusal> {
        let wanted = self.layout.replication_factor;
        let (_, shards) = self.shards().await?;
        match under_replicated(&shards, wanted) {
            None => Ok(()),
            Some(short) => Err((
                StoreErrorKind::Incompatible,
                format!(
                    "the collection is less replicated than [store] replication_factor = \
                     {wanted}: {short} (on {} peer(s)); add replicas with Qdrant's \
                     replicate_shard cluster operation, or lower replication_factor",
                    peers_of(&shards)
                ),
            )),
        }
    }

    pub(super) async fn exists(&self) -> Result<bool, Refusal> {
        let request = CollectionExistsRequest {
            collection_name: self.collection.clone(),
        };
        self.call(|c| {
            let request = request.clone();
            async move { c.collection_exists(request).await }
        })
        .await
        .map_err(|e| {
            (
                error_kind(&e),
                format!("checking the collection: {}", describe_error(&e)),
            )
        })
    }

    /// Creates the collection with the configured layout once enough peers hold every
    /// replica, waiting at most `peer_wait`. Returns without creating when another process
    /// created it meanwhile (its replication is checked like any existing collection's).
    pub(super) async fn create_replicated(
        &self,
        dense: &Option<(String, usize)>,
    ) -> Result<(), Refusal> {
        let layout = self.layout;
        let deadline = Instant::now() + layout.peer_wait;
        // The wait is logged once per peer count, not once per poll.
        let mut logged_peers = None;
        loop {
            let request = self.create_request(dense);
            let created = self
                .call(|c| {
                    let request = request.clone();
                    async move { c.create_collection(request).await }
                })
                .await;
            if let Err(e) = created {
                // Another lore process may have created it meanwhile; the checks that
                // follow decide whether that is fine.
                if self.exists().await.unwrap_or(false) {
                    return Ok(());
                }
                let kind = error_kind(&e);
                if !kind.is_transient() || Instant::now() >= deadline {
                    return Err((
                        kind,
                        format!("creating the collection: {}", describe_error(&e)),
                    ));
                }
                pause_until(deadline).await;
                continue;
            }
            let (_, shards) = self.shards().await?;
            let Some(short) = under_replicated(&shards, layout.replication_factor) else {
                tracing::info!(
                    collection = %self.collection,
                    shards = shards.len(),
                    replication_factor = layout.replication_factor,
                    peers = peers_of(&shards),
                    "created the Qdrant collection"
                );
                return Ok(());
            };
            // Too few peers have joined: drop the empty collection just created and try
            // again, rather than keep a layout Qdrant never repairs.
            let peers = peers_of(&shards);
            let request = DeleteCollection {
                collection_name: self.collection.clone(),
                timeout: None,
            };
            self.call(|c| {
                let request = request.clone();
                async move { c.delete_collection(request).await }
            })
            .await
            .map_err(|e| {
                (
                    error_kind(&e),
                    format!(
                        "dropping the under-replicated collection just created: {}",
                        describe_error(&e)
                    ),
                )
            })?;
            if Instant::now() >= deadline {
                return Err((
                    StoreErrorKind::Unavailable,
                    format!(
                        "only {peers} Qdrant peer(s) took replicas of the new collection ({short}) \
                         but [store] replication_factor is {}; waited {} s ([store] \
                         peer_wait_secs) for more peers to join. Start the other Qdrant nodes \
                         (or check that they joined the cluster), or lower replication_factor",
                        layout.replication_factor,
                        layout.peer_wait.as_secs()
                    ),
                ));
            }
            if logged_peers != Some(peers) {
                logged_peers = Some(peers);
                tracing::info!(
                    peers,
                    replication_factor = layout.replication_factor,
                    "waiting for more Qdrant peers before creating the collection"
                );
            }
            pause_until(deadline).await;
        }
    }
}

/// One poll interval, or what is left until `deadline`.
async fn pause_until(deadline: Instant) {
    let left = deadline.saturating_duration_since(Instant::now());
    tokio::time::sleep(PEER_POLL.min(left)).await;
}
