//! What an agent remembers of the peers it has asked: success rate and EWMA
//! latency, kept in its data directory so that it survives restarts.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ecco_core::performance::History;
use ecco_core::{AgentId, Performance};

/// Most peers remembered; beyond it the least used are forgotten.
pub const MAX_REMEMBERED: usize = 10_000;

/// The file name inside the data directory.
pub const FILE: &str = "performance.json";

/// How often, at most, the memory is written while the agent runs.
pub const SAVE_EVERY: Duration = Duration::from_secs(1);

/// Per-peer performance, optionally backed by a JSON file.
#[derive(Debug, Default)]
pub struct Memory {
    peers: HashMap<AgentId, Performance>,
    path: Option<PathBuf>,
    /// Changed since the last write.
    dirty: bool,
    last_saved: Option<Instant>,
    /// Counts snapshots, so that an older one never overwrites a newer.
    generation: u64,
    /// The newest generation written; held while writing, so writes are serial.
    written: Arc<Mutex<u64>>,
}

/// A copy of the memory to write away from the lock and the async workers.
#[derive(Debug)]
pub struct Snapshot {
    peers: HashMap<AgentId, Performance>,
    path: PathBuf,
    generation: u64,
    written: Arc<Mutex<u64>>,
}

impl Snapshot {
    /// Writes the file atomically (a temporary file renamed over it),
    /// unless a newer snapshot has been written already.
    pub fn write(&self) -> io::Result<()> {
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        if *written >= self.generation {
            return Ok(());
        }
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec(&self.peers).map_err(io::Error::other)?;
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, &self.path)?;
        *written = self.generation;
        Ok(())
    }
}

impl History for Memory {
    fn performance(&self, agent: &AgentId) -> Option<&Performance> {
        self.peers.get(agent)
    }
}

impl Memory {
    /// Loads `dir/performance.json`. A missing file is an empty memory; an
    /// unreadable one is set aside as `performance.json.corrupt` (so nothing
    /// is lost) and the memory starts empty.
    pub fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(FILE);
        let peers = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<HashMap<AgentId, Performance>>(&bytes) {
                Ok(peers) => peers,
                Err(e) => {
                    let aside = dir.join(format!("{FILE}.corrupt"));
                    tracing::warn!(path = %path.display(), error = %e, aside = %aside.display(), "unreadable performance memory set aside");
                    std::fs::rename(&path, &aside)?;
                    HashMap::new()
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => HashMap::new(),
            Err(e) => return Err(e),
        };
        Ok(Self {
            peers,
            path: Some(path),
            dirty: false,
            last_saved: None,
            generation: 0,
            written: Arc::default(),
        })
    }

    /// Records a success.
    pub fn success(&mut self, agent: &AgentId, latency: std::time::Duration) {
        self.entry(agent).record_success(latency);
    }

    /// Records a failure.
    pub fn failure(&mut self, agent: &AgentId) {
        self.entry(agent).record_failure();
    }

    fn entry(&mut self, agent: &AgentId) -> &mut Performance {
        self.dirty = true;
        if !self.peers.contains_key(agent) && self.peers.len() >= MAX_REMEMBERED {
            let least = self
                .peers
                .iter()
                .min_by_key(|(_, p)| p.successes + p.failures)
                .map(|(a, _)| a.clone());
            if let Some(least) = least {
                self.peers.remove(&least);
            }
        }
        self.peers.entry(agent.clone()).or_default()
    }

    /// Writes the memory to its file now, atomically (a temporary file
    /// renamed over it). Does nothing for an in-memory one.
    pub fn save(&mut self) -> io::Result<()> {
        match self.snapshot() {
            Some(snapshot) => snapshot.write(),
            None => Ok(()),
        }
    }

    /// A copy to write, if there are changes and the last write is at
    /// least [`SAVE_EVERY`] old; counts as written.
    pub fn snapshot_if_due(&mut self) -> Option<Snapshot> {
        if !self.dirty || self.last_saved.is_some_and(|t| t.elapsed() < SAVE_EVERY) {
            return None;
        }
        self.snapshot()
    }

    fn snapshot(&mut self) -> Option<Snapshot> {
        let path = self.path.clone()?;
        self.dirty = false;
        self.last_saved = Some(Instant::now());
        self.generation += 1;
        Some(Snapshot {
            peers: self.peers.clone(),
            path,
            generation: self.generation,
            written: self.written.clone(),
        })
    }

    /// Every peer remembered.
    pub fn peers(&self) -> &HashMap<AgentId, Performance> {
        &self.peers
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn id(s: &str) -> AgentId {
        AgentId::new(s).unwrap()
    }

    #[test]
    fn survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Memory::open(dir.path()).unwrap();
        m.success(&id("a"), Duration::from_millis(10));
        m.failure(&id("b"));
        // Due at once the first time, then not again within SAVE_EVERY.
        m.snapshot_if_due().unwrap().write().unwrap();
        m.failure(&id("b"));
        assert!(m.snapshot_if_due().is_none());
        m.save().unwrap();
        let again = Memory::open(dir.path()).unwrap();
        assert_eq!(again.performance(&id("a")).unwrap().successes, 1);
        assert_eq!(again.performance(&id("b")).unwrap().failures, 2);
    }

    #[test]
    fn an_older_snapshot_never_overwrites_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Memory::open(dir.path()).unwrap();
        m.success(&id("a"), Duration::from_millis(10));
        let old = m.snapshot_if_due().unwrap();
        m.success(&id("a"), Duration::from_millis(10));
        m.save().unwrap();
        old.write().unwrap();
        let again = Memory::open(dir.path()).unwrap();
        assert_eq!(again.performance(&id("a")).unwrap().successes, 2);
    }

    #[test]
    fn a_corrupt_file_is_set_aside_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"{not json").unwrap();
        let m = Memory::open(dir.path()).unwrap();
        assert!(m.peers().is_empty());
        let aside = std::fs::read(dir.path().join(format!("{FILE}.corrupt"))).unwrap();
        assert_eq!(aside, b"{not json");
    }
}
