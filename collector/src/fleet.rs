//! The hosts one collector reports for: the simulated fleet, or this machine.

use chrono::{DateTime, Utc};
use gpuwatch_store::Batch;

use crate::sinks::Inventory;
use crate::sources::sim::SimFleet;
use crate::{CollectorConfig, SourceKind};

/// What a collector samples.
pub enum Fleet {
    /// N simulated hosts.
    Sim(SimFleet),
}

impl Fleet {
    /// The fleet the config asks for.
    pub fn new(cfg: &CollectorConfig) -> Fleet {
        match cfg.source {
            SourceKind::Sim => Fleet::Sim(SimFleet::new(cfg.sim.clone(), Utc::now())),
        }
    }

    /// Hosts and GPUs, for registration.
    pub fn inventory(&mut self) -> Inventory {
        match self {
            Fleet::Sim(f) => {
                let gpus = f.gpus();
                f.hosts()
                    .into_iter()
                    .map(|h| {
                        let mine = gpus.iter().filter(|g| g.host_id == h.id).cloned().collect();
                        (h, mine)
                    })
                    .collect()
            }
        }
    }

    /// One collection at `at`.
    pub fn collect(&mut self, at: DateTime<Utc>) -> Batch {
        match self {
            Fleet::Sim(f) => {
                let (gpu, host) = f.sample(at);
                Batch {
                    gpu,
                    host,
                    env: Vec::new(),
                }
            }
        }
    }
}
