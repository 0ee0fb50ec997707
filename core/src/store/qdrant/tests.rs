//! The server store's own checks that need no server: versions, the payload round trip,
//! and the kinds of its connect errors.

use std::time::Duration;

use super::cluster::{shards_of, under_replicated};
use super::collection::check_version;
use super::points::{parse_id, to_chunk, to_point};
use super::{QdrantStore, ServerConfig};
use crate::store::schema::chunk_point_id;
use crate::store::{SparseVector, StoreErrorKind, StoredChunk};

#[test]
fn versions_below_the_minimum_are_refused_with_the_reason() {
    assert!(check_version("1.16.0").is_ok());
    assert!(check_version("1.17.2-dev").is_ok());
    assert!(check_version("2.0.0").is_ok());
    let err = check_version("1.9.4").unwrap_err();
    assert!(err.contains("1.9.4") && err.contains("1.16"), "{err}");
    assert!(check_version("dev").unwrap_err().contains("unreadable"));
}

#[test]
fn a_chunk_survives_the_payload_round_trip() {
    let chunk = crate::store::schema::tests::chunk();
    let point = to_point(StoredChunk {
        chunk: chunk.clone(),
        dense: Some(vec![0.5, 0.25]),
        sparse: SparseVector {
            indices: vec![1, 9],
            values: vec![1.0, 2.0],
        },
    })
    .unwrap();
    assert_eq!(
        parse_id(point.id.clone()).unwrap(),
        chunk_point_id("t", "a.md", 3)
    );
    assert_eq!(to_chunk(point.payload).unwrap(), chunk);
}

fn config(url: String) -> ServerConfig {
    ServerConfig {
        url,
        collection: "lore".into(),
        api_key: None,
        timeout: Duration::from_secs(20),
        layout: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_is_unavailable_and_a_bad_url_invalid() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = QdrantStore::connect(config(format!("http://127.0.0.1:{port}")), None)
        .await
        .err()
        .expect("nothing listens there");
    assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
    let err = QdrantStore::connect(config("localhost:6334".into()), None)
        .await
        .err()
        .expect("a URL without a scheme is refused");
    assert_eq!(err.kind(), StoreErrorKind::Invalid, "{err}");
}

#[test]
fn shards_are_read_from_local_and_remote_replicas_and_short_ones_named() {
    // Peer 1 answers: it holds shards 0 and 1; peer 2 holds 1 and 2 (dead), peer 3 holds 0.
    let shards = shards_of(1, [(0, 0), (1, 0)], [(1, 2, 0), (2, 2, 1), (0, 3, 0)]);
    let layout: Vec<(u32, Vec<(u64, &str)>)> = shards
        .iter()
        .map(|s| {
            (
                s.shard,
                s.replicas
                    .iter()
                    .map(|r| (r.peer, r.state.as_str()))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        layout,
        [
            (0, vec![(1, "Active"), (3, "Active")]),
            (1, vec![(1, "Active"), (2, "Active")]),
            (2, vec![(2, "Dead")]),
        ]
    );
    assert_eq!(under_replicated(&shards, 1), None);
    assert_eq!(
        under_replicated(&shards, 2).as_deref(),
        Some("shard 2 has 1 replica")
    );
    assert_eq!(
        under_replicated(&shards, 3).as_deref(),
        Some("shard 0 has 2 replicas, shard 1 has 2 replicas, shard 2 has 1 replica")
    );
}
