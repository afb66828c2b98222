//! Leader changes during a scenario: `fleet_state.leader_epoch` at the start and the end
//! (every election increments it, so the delta counts changes even between samples), and
//! the sequence of `leader_node@epoch` seen by sampling every 200 ms. No load, cohort or
//! outage should cost the leadership (DESIGN §2, invariant 5): the expected delta is 0.

use std::time::Duration;

use serde::Serialize;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::leader;

#[derive(Debug, Clone, Serialize)]
pub struct LeaderChanges {
    pub epoch_at_start: i64,
    pub epoch_at_end: i64,
    /// `epoch_at_end − epoch_at_start`.
    pub changes: i64,
    /// `node@epoch` each time the sampled leader differed from the previous sample
    /// (`-` when no node held the lock).
    pub sequence: Vec<String>,
}

impl LeaderChanges {
    pub fn cell(&self) -> String {
        if self.changes == 0 {
            "0".into()
        } else {
            format!("{} ({})", self.changes, self.sequence.join(" -> "))
        }
    }
}

pub struct LeaderWatch {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<(i64, i64, Vec<String>)>,
}

impl LeaderWatch {
    pub fn start(pool: &PgPool) -> Self {
        let stop = CancellationToken::new();
        let token = stop.clone();
        let pool = pool.clone();
        let task = tokio::spawn(async move {
            let label =
                |l: &(Option<String>, i64)| format!("{}@{}", l.0.as_deref().unwrap_or("-"), l.1);
            let first = leader(&pool).await.unwrap_or((None, 0));
            let mut last = first.clone();
            let mut sequence = vec![label(&first)];
            loop {
                tokio::select! {
                    () = token.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
                if let Some(now) = leader(&pool).await {
                    if now != last {
                        sequence.push(label(&now));
                        last = now;
                    }
                }
            }
            if let Some(now) = leader(&pool).await {
                if now != last {
                    sequence.push(label(&now));
                    last = now;
                }
            }
            (first.1, last.1, sequence)
        });
        Self { stop, task }
    }

    pub async fn finish(self) -> LeaderChanges {
        self.stop.cancel();
        let (start, end, sequence) = self.task.await.unwrap_or((0, 0, Vec::new()));
        LeaderChanges {
            epoch_at_start: start,
            epoch_at_end: end,
            changes: end - start,
            sequence,
        }
    }
}
