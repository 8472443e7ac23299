//! The on-disk spool: batches the sink could not take wait here, oldest
//! first, and survive a restart of the agent.
//!
//! One gzip'd JSON file per batch, named by a sequence number, written to a
//! temporary name, fsync'd and renamed, so a crash leaves either the whole
//! batch or nothing. The total size is capped: past the cap the oldest
//! batches are dropped (and counted), because the newest data is what an
//! operator looks at first after an outage. Batches the receiver rejects
//! for good (4xx) go to `rejected/` for inspection instead of blocking the
//! queue, each with a `.reason` file beside it holding the receiver's answer;
//! `rejected/` keeps at most `rejected_keep` batches, none older than
//! `rejected_max_age`.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use flate2::{read::GzDecoder, write::GzEncoder, Compression};
use gpuwatch_store::Batch;
use thiserror::Error;

/// What the spool can fail with.
#[derive(Debug, Error)]
pub enum SpoolError {
    /// The spool directory or a file in it could not be used.
    #[error("spool {path}: {source}; check collector.spool.dir and its permissions")]
    Io {
        /// the file or directory
        path: String,
        /// the OS error
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.display().to_string(),
        source,
    }
}

// The options are constants of this file: `new` fails only on an invalid
// name, which a test run would show at once.
fn gauge(name: &str, help: &str) -> prometheus::IntGauge {
    prometheus::IntGauge::new(name, help).expect("valid gauge")
}

static SPOOL_BATCHES: std::sync::LazyLock<prometheus::IntGauge> = std::sync::LazyLock::new(|| {
    gauge(
        "gpuwatch_collector_spool_batches",
        "Batches waiting in the agent's on-disk spool.",
    )
});
static SPOOL_BYTES: std::sync::LazyLock<prometheus::IntGauge> = std::sync::LazyLock::new(|| {
    gauge(
        "gpuwatch_collector_spool_bytes",
        "Bytes of the agent's on-disk spool.",
    )
});
static SPOOL_DROPPED: std::sync::LazyLock<prometheus::IntCounter> =
    std::sync::LazyLock::new(|| {
        prometheus::IntCounter::new(
            "gpuwatch_collector_spool_dropped_total",
            "Batches dropped because the spool was full.",
        )
        .expect("valid counter")
    });

/// Puts the collector's metrics (spool depth, drops) on `registry`; see
/// [`gpuwatch_store::metrics`] for the pattern.
pub fn register_metrics(registry: &prometheus::Registry) -> Result<(), prometheus::Error> {
    gpuwatch_store::metrics::register_on(
        registry,
        vec![
            Box::new(SPOOL_BATCHES.clone()),
            Box::new(SPOOL_BYTES.clone()),
            Box::new(SPOOL_DROPPED.clone()),
            Box::new(SPOOL_REJECTED.clone()),
        ],
    )
}

static SPOOL_REJECTED: std::sync::LazyLock<prometheus::IntCounter> =
    std::sync::LazyLock::new(|| {
        prometheus::IntCounter::new(
            "gpuwatch_collector_spool_rejected_total",
            "Batches set aside in the spool's rejected/ (refused by the receiver, or unreadable).",
        )
        .expect("valid counter")
    });

/// A bounded, ordered, crash-safe queue of batches in a directory.
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    rejected_keep: usize,
    rejected_max_age: std::time::Duration,
    /// (sequence, size in bytes), oldest first.
    entries: Vec<(u64, u64)>,
    next: u64,
    dropped: u64,
}

impl Spool {
    /// Opens (creating) `dir` and picks up batches left by an earlier run.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        fs::create_dir_all(dir.join("rejected")).map_err(io(dir))?;
        let mut entries = Vec::new();
        for e in fs::read_dir(dir).map_err(io(dir))? {
            let e = e.map_err(io(dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(seq) = name
                .strip_suffix(".json.gz")
                .and_then(|s| s.parse::<u64>().ok())
            {
                entries.push((seq, e.metadata().map_err(io(&e.path()))?.len()));
            } else if name.ends_with(".tmp") {
                // A write the agent did not finish: never renamed, so never acknowledged.
                let _ = fs::remove_file(e.path());
            }
        }
        entries.sort_unstable();
        let next = entries.last().map_or(0, |(s, _)| s + 1);
        let spool = Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            rejected_keep: 100,
            rejected_max_age: std::time::Duration::from_secs(7 * 86_400),
            entries,
            next,
            dropped: 0,
        };
        spool.publish();
        Ok(spool)
    }

    /// Keeps at most `keep` refused batches in `rejected/`, none older than
    /// `max_age`, and prunes what is there now beyond that.
    pub fn with_rejected_limits(mut self, keep: usize, max_age: std::time::Duration) -> Self {
        self.rejected_keep = keep;
        self.rejected_max_age = max_age;
        self.prune_rejected();
        self
    }

    /// Spool depth for `/metrics` (when the agent runs inside `gpuwatch all`).
    fn publish(&self) {
        SPOOL_BATCHES.set(self.entries.len() as i64);
        SPOOL_BYTES.set(self.bytes() as i64);
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.json.gz"))
    }

    /// Batches waiting.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.entries.iter().map(|(_, b)| b).sum()
    }

    /// Batches dropped because the spool was full, since start.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Appends a batch durably, dropping the oldest ones beyond the cap.
    pub fn push(&mut self, batch: &Batch) -> Result<(), SpoolError> {
        let seq = self.next;
        let path = self.path(seq);
        let tmp = path.with_extension("tmp");
        let json = serde_json::to_vec(batch).map_err(|e| SpoolError::Io {
            path: tmp.display().to_string(),
            source: e.into(),
        })?;
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&json).map_err(io(&tmp))?;
        let bytes = gz.finish().map_err(io(&tmp))?;
        let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        fs::rename(&tmp, &path).map_err(io(&path))?;
        self.entries.push((seq, bytes.len() as u64));
        self.next += 1;
        while self.bytes() > self.max_bytes && self.entries.len() > 1 {
            let (old, _) = self.entries.remove(0);
            let _ = fs::remove_file(self.path(old));
            self.dropped += 1;
            SPOOL_DROPPED.inc();
            tracing::error!(
                spool.seq = old,
                spool.max_bytes = self.max_bytes,
                "spool full: dropped its oldest batch"
            );
        }
        self.publish();
        Ok(())
    }

    /// The oldest batch, if any. An unreadable file is moved to `rejected/`
    /// and the next one returned, so one bad file cannot block the queue.
    pub fn oldest(&mut self) -> Result<Option<(u64, Batch)>, SpoolError> {
        while let Some(&(seq, _)) = self.entries.first() {
            let path = self.path(seq);
            let mut json = Vec::new();
            let read = fs::File::open(&path).and_then(|f| GzDecoder::new(f).read_to_end(&mut json));
            match read
                .map_err(|e| e.to_string())
                .and_then(|_| serde_json::from_slice::<Batch>(&json).map_err(|e| e.to_string()))
            {
                Ok(b) => return Ok(Some((seq, b))),
                Err(e) => {
                    tracing::error!(spool.file = %path.display(), error = %e, "unreadable spool file moved to rejected/");
                    self.reject(seq, &format!("unreadable spool file: {e}"))?;
                }
            }
        }
        Ok(None)
    }

    /// Up to `n` oldest batches, oldest first (unreadable files are set
    /// aside as in [`Spool::oldest`]).
    pub fn oldest_n(&mut self, n: usize) -> Result<Vec<(u64, Batch)>, SpoolError> {
        let mut out = Vec::new();
        let mut i = 0;
        while out.len() < n && i < self.entries.len() {
            let seq = self.entries[i].0;
            let path = self.path(seq);
            let mut json = Vec::new();
            let read = fs::File::open(&path).and_then(|f| GzDecoder::new(f).read_to_end(&mut json));
            match read
                .map_err(|e| e.to_string())
                .and_then(|_| serde_json::from_slice::<Batch>(&json).map_err(|e| e.to_string()))
            {
                Ok(b) => {
                    out.push((seq, b));
                    i += 1;
                }
                Err(e) => {
                    tracing::error!(spool.file = %path.display(), error = %e, "unreadable spool file moved to rejected/");
                    self.reject(seq, &format!("unreadable spool file: {e}"))?;
                }
            }
        }
        Ok(out)
    }

    /// Removes a batch that was delivered. Already gone is fine: a full
    /// spool may have dropped it while it was being sent.
    pub fn remove(&mut self, seq: u64) -> Result<(), SpoolError> {
        let path = self.path(seq);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&path)(e)),
            _ => {}
        }
        self.entries.retain(|(s, _)| *s != seq);
        self.publish();
        Ok(())
    }

    /// Moves a batch the receiver refused for good to `rejected/`, with
    /// `reason` (the receiver's answer) in a `.reason` file beside it, then
    /// prunes `rejected/`.
    pub fn reject(&mut self, seq: u64, reason: &str) -> Result<(), SpoolError> {
        let path = self.path(seq);
        let rejected = self.dir.join("rejected");
        let to = rejected.join(path.file_name().unwrap_or_default());
        let why = rejected.join(format!("{seq:020}.reason"));
        let text = format!(
            "refused at {}\n{}\n",
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            reason.trim_end()
        );
        fs::write(&why, text).map_err(io(&why))?;
        match fs::rename(&path, &to) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&path)(e)),
            _ => {}
        }
        SPOOL_REJECTED.inc();
        self.entries.retain(|(s, _)| *s != seq);
        self.publish();
        self.prune_rejected();
        Ok(())
    }

    /// The batches in `rejected/`, oldest first, with their reasons.
    pub fn rejected(&self) -> Vec<(PathBuf, String)> {
        let mut out: Vec<(PathBuf, String)> = self
            .rejected_files()
            .into_iter()
            .map(|(seq, _)| {
                let reason =
                    fs::read_to_string(self.dir.join("rejected").join(format!("{seq:020}.reason")))
                        .unwrap_or_default();
                (
                    self.dir.join("rejected").join(format!("{seq:020}.json.gz")),
                    reason,
                )
            })
            .collect();
        out.sort();
        out
    }

    /// (sequence, modified) of every batch in `rejected/`, oldest first.
    fn rejected_files(&self) -> Vec<(u64, std::time::SystemTime)> {
        let Ok(dir) = fs::read_dir(self.dir.join("rejected")) else {
            return Vec::new();
        };
        let mut files: Vec<(u64, std::time::SystemTime)> = dir
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let seq = name.strip_suffix(".json.gz")?.parse::<u64>().ok()?;
                let modified = e.metadata().and_then(|m| m.modified()).ok()?;
                Some((seq, modified))
            })
            .collect();
        files.sort_unstable();
        files
    }

    /// Deletes refused batches (and their reasons) beyond the count and age
    /// limits, oldest first. A failure only leaves a file for the next time.
    fn prune_rejected(&self) {
        let files = self.rejected_files();
        let over = files.len().saturating_sub(self.rejected_keep);
        let now = std::time::SystemTime::now();
        for (i, (seq, modified)) in files.iter().enumerate() {
            let old = now
                .duration_since(*modified)
                .is_ok_and(|age| age > self.rejected_max_age);
            if i < over || old {
                let base = self.dir.join("rejected");
                let _ = fs::remove_file(base.join(format!("{seq:020}.json.gz")));
                let _ = fs::remove_file(base.join(format!("{seq:020}.reason")));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpuwatch_store::HostSample;

    fn batch(n: usize) -> Batch {
        Batch {
            host: (0..n)
                .map(|i| HostSample {
                    host_id: format!("h{i}"),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn batches_come_back_in_order_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        for n in 1..=3 {
            s.push(&batch(n)).unwrap();
        }
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.len(), 3);
        let (seq, b) = s.oldest().unwrap().unwrap();
        assert_eq!(b, batch(1));
        s.remove(seq).unwrap();
        assert_eq!(s.oldest().unwrap().unwrap().1, batch(2));
        s.push(&batch(9)).unwrap();
        assert_eq!(s.len(), 3, "a push after a reopen continues the sequence");
    }

    #[test]
    fn a_full_spool_drops_the_oldest_and_counts_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1).unwrap();
        s.push(&batch(1)).unwrap();
        s.push(&batch(2)).unwrap();
        assert_eq!((s.len(), s.dropped()), (1, 1));
        assert_eq!(s.oldest().unwrap().unwrap().1, batch(2));
    }

    #[test]
    fn a_corrupt_file_is_set_aside_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.push(&batch(1)).unwrap();
        s.push(&batch(2)).unwrap();
        fs::write(dir.path().join(format!("{:020}.json.gz", 0)), b"not gzip").unwrap();
        assert_eq!(s.oldest().unwrap().unwrap().1, batch(2));
        assert!(s.rejected()[0].1.contains("unreadable spool file"));
        assert!(dir
            .path()
            .join("rejected")
            .join(format!("{:020}.json.gz", 0))
            .exists());
        // A half-written file from a crash is discarded on open.
        fs::write(dir.path().join("00000000000000000009.json.tmp"), b"partial").unwrap();
        let s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn a_refused_batch_keeps_its_reason_and_rejected_is_pruned_by_count() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20)
            .unwrap()
            .with_rejected_limits(2, std::time::Duration::from_secs(3600));
        for n in 1..=3 {
            s.push(&batch(n)).unwrap();
        }
        for seq in 0..3 {
            s.reject(seq, &format!("answered 422: problem {seq}"))
                .unwrap();
        }
        let kept = s.rejected();
        assert_eq!(kept.len(), 2, "{kept:?}");
        assert!(kept[0].0.ends_with(format!("{:020}.json.gz", 1)));
        assert!(kept[0].1.contains("answered 422: problem 1"), "{kept:?}");
        assert!(!dir
            .path()
            .join("rejected")
            .join(format!("{:020}.reason", 0))
            .exists());
        assert!(s.is_empty());
        // A batch dropped while it was being sent is gone already: fine.
        s.remove(7).unwrap();
    }

    #[test]
    fn rejected_batches_past_the_age_limit_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.push(&batch(1)).unwrap();
        s.reject(0, "refused").unwrap();
        assert_eq!(s.rejected().len(), 1);
        // Older than zero: any time at all must pass.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let s = s.with_rejected_limits(100, std::time::Duration::ZERO);
        assert!(s.rejected().is_empty());
    }
}
