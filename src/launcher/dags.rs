//! DAG documents by `(workflow_id, version)`. Versions are immutable, so a loaded DAG is
//! kept for the life of the process (bounded: past [`MAX_ENTRIES`] the cache starts over).

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use sqlx::PgPool;

/// Distinct workflow versions kept in memory at most.
pub const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Default)]
pub struct DagCache {
    map: RwLock<HashMap<(String, i32), Arc<serde_json::Value>>>,
}

impl DagCache {
    pub fn get(&self, workflow_id: &str, version: i32) -> Option<Arc<serde_json::Value>> {
        let map = self
            .map
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(&(workflow_id.to_owned(), version)).cloned()
    }

    /// Loads, in one query, the DAGs of `keys` that are not cached yet. Keys with no
    /// stored DAG stay absent (the launch then fails with `workflow_not_found`).
    pub async fn load_missing<'a>(
        &self,
        pool: &PgPool,
        keys: impl Iterator<Item = (&'a str, i32)>,
    ) -> Result<(), sqlx::Error> {
        let (ids, versions): (Vec<String>, Vec<i32>) = {
            let map = self
                .map
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut wanted: Vec<(String, i32)> = keys
                .filter(|(w, v)| !map.contains_key(&((*w).to_owned(), *v)))
                .map(|(w, v)| (w.to_owned(), v))
                .collect();
            wanted.sort();
            wanted.dedup();
            wanted.into_iter().unzip()
        };
        if ids.is_empty() {
            return Ok(());
        }
        let rows: Vec<(String, i32, serde_json::Value)> = sqlx::query_as(
            "select w.workflow_id, w.version, w.dag from workflow_versions w \
             join unnest($1::text[], $2::int4[]) as k(workflow_id, version) \
               on w.workflow_id = k.workflow_id and w.version = k.version",
        )
        .bind(&ids)
        .bind(&versions)
        .fetch_all(pool)
        .await?;
        let mut map = self
            .map
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() + rows.len() > MAX_ENTRIES {
            map.clear();
        }
        for (w, v, dag) in rows {
            map.insert((w, v), Arc::new(dag));
        }
        Ok(())
    }
}
