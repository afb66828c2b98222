//! DAG documents by `(workflow_id, version)`. Versions are immutable, so a loaded DAG
//! never goes stale; the cache only bounds memory.
//!
//! Decisions, and why:
//! - **Bounded by bytes, not entries**: one DAG may be 2 bytes or `SCHEDULER_MAX_DAG_BYTES`
//!   (256 KiB by default), so a count says nothing about memory. Each entry is weighed by
//!   an estimate of what its parsed document holds on the heap ([`weight`]), and the cache
//!   keeps at most `SCHEDULER_DAG_CACHE_BYTES` (64 MiB by default) of them.
//! - **Least recently used leaves first** (moka's LRU policy): the DAGs of the runs being
//!   launched now are the ones read last; an old version nobody schedules any more goes.
//! - **A miss is never a failure**: the dispatcher loads the DAGs of a claimed batch in
//!   one query, but an entry may be evicted before its run is sent (many distinct
//!   versions in flight), so [`DagCache::get_or_load`] reads a missing DAG again from the
//!   database. Only a version that is not stored ends the run `workflow_not_found`; a
//!   database error leaves it to be retried like an Executor outage.

use std::sync::Arc;

use moka::{policy::EvictionPolicy, sync::Cache};
use serde_json::Value;
use sqlx::PgPool;

pub use crate::config::DEFAULT_DAG_CACHE_BYTES as DEFAULT_CACHE_BYTES;

type Key = (String, i32);

#[derive(Clone)]
pub struct DagCache {
    cache: Cache<Key, Arc<Value>>,
}

impl std::fmt::Debug for DagCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DagCache")
            .field("entries", &self.cache.entry_count())
            .field("bytes", &self.cache.weighted_size())
            .finish()
    }
}

impl Default for DagCache {
    fn default() -> Self {
        Self::new(DEFAULT_CACHE_BYTES)
    }
}

impl DagCache {
    /// A cache of at most `max_bytes` (by [`weight`]).
    pub fn new(max_bytes: u64) -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|(workflow_id, _): &Key, dag: &Arc<Value>| {
                    u32::try_from(weight(dag) + workflow_id.len() + 64).unwrap_or(u32::MAX)
                })
                .eviction_policy(EvictionPolicy::lru())
                .build(),
        }
    }

    /// The cached DAG, if any (does not read the database).
    pub fn get(&self, workflow_id: &str, version: i32) -> Option<Arc<Value>> {
        self.cache.get(&(workflow_id.to_owned(), version))
    }

    /// The DAG, from the cache or else from the database (and cached). `None` when the
    /// version is not stored.
    pub async fn get_or_load(
        &self,
        pool: &PgPool,
        workflow_id: &str,
        version: i32,
    ) -> Result<Option<Arc<Value>>, sqlx::Error> {
        if let Some(dag) = self.get(workflow_id, version) {
            return Ok(Some(dag));
        }
        let dag: Option<Value> = sqlx::query_scalar(
            "select dag from workflow_versions where workflow_id = $1 and version = $2",
        )
        .bind(workflow_id)
        .bind(version)
        .fetch_optional(pool)
        .await?;
        Ok(dag.map(|dag| {
            let dag = Arc::new(dag);
            self.cache
                .insert((workflow_id.to_owned(), version), dag.clone());
            dag
        }))
    }

    /// Loads, in one query, the DAGs of `keys` that are not cached yet (a claimed batch).
    /// Keys with no stored DAG stay absent.
    pub async fn load_missing<'a>(
        &self,
        pool: &PgPool,
        keys: impl Iterator<Item = (&'a str, i32)>,
    ) -> Result<(), sqlx::Error> {
        let mut wanted: Vec<Key> = keys
            .filter(|(w, v)| !self.cache.contains_key(&((*w).to_owned(), *v)))
            .map(|(w, v)| (w.to_owned(), v))
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        wanted.sort();
        wanted.dedup();
        let (ids, versions): (Vec<String>, Vec<i32>) = wanted.into_iter().unzip();
        let rows: Vec<(String, i32, Value)> = sqlx::query_as(
            "select w.workflow_id, w.version, w.dag from workflow_versions w \
             join unnest($1::text[], $2::int4[]) as k(workflow_id, version) \
               on w.workflow_id = k.workflow_id and w.version = k.version",
        )
        .bind(&ids)
        .bind(&versions)
        .fetch_all(pool)
        .await?;
        for (w, v, dag) in rows {
            self.cache.insert((w, v), Arc::new(dag));
        }
        Ok(())
    }

    /// Entries and estimated bytes held now (after pending evictions are applied).
    pub fn usage(&self) -> (u64, u64) {
        self.cache.run_pending_tasks();
        (self.cache.entry_count(), self.cache.weighted_size())
    }
}

/// An estimate of the heap a parsed JSON document holds: each value's own slot plus its
/// strings' bytes and each object entry's key. Close enough to bound memory by; exact
/// allocator overhead is not counted.
pub fn weight(value: &Value) -> usize {
    const SLOT: usize = std::mem::size_of::<Value>();
    SLOT + match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        Value::String(s) => s.len(),
        Value::Array(items) => items.iter().map(weight).sum(),
        // A map entry: its key string and the tree's node share, about two slots.
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| k.len() + 2 * SLOT + weight(v))
            .sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn weight_grows_with_the_document() {
        let small = weight(&json!({}));
        let text = weight(&json!({"a": "x".repeat(10_000)}));
        assert!(text > 10_000 && text < 10_300, "{text}");
        assert!(small < 100, "{small}");
        let nested = weight(&json!({"tasks": [{"id": "a"}, {"id": "b"}]}));
        assert!(nested > weight(&json!({"tasks": []})));
    }

    #[test]
    fn the_cache_holds_at_most_its_bytes_dropping_the_least_recently_used() {
        let cache = DagCache::new(100_000);
        let dag = Arc::new(json!({"blob": "x".repeat(10_000)}));
        for v in 0..50 {
            cache.cache.insert(("wf".into(), v), dag.clone());
            // Keep version 0 in use: read it after every insert.
            assert!(cache.get("wf", 0).is_some(), "version 0 evicted at {v}");
            cache.cache.run_pending_tasks();
        }
        let (entries, bytes) = cache.usage();
        assert!(bytes <= 100_000, "{bytes} bytes in {entries} entries");
        assert!((5..=10).contains(&entries), "{entries}");
        assert!(cache.get("wf", 49).is_some(), "the newest is kept");
        assert!(cache.get("wf", 1).is_none(), "an old unused one is gone");
    }
}
