//! The system-metrics hooks of `run`: a sampler ([`crate::capture::sysmetrics`]) started once
//! the child runs (its process tree on the host, its container's cgroup in container mode) and
//! stopped when it ends; its `sys/…` points stored with the run's other metrics. Nothing here
//! changes a run's status or exit code: a failure to store is a warning.

use std::time::{Duration, Instant};

use crate::capture::sysmetrics::{self, ExtraSource, Sampled, Sampler, Target};
use crate::exec::Spawn;
use crate::ops::Events;
use crate::store::Store;

/// How a run samples system metrics.
#[derive(Default)]
pub struct SysMetrics {
    /// Every how long (zero: not at all).
    pub interval: Duration,
    /// Another source sampled with the rest: the GPUs (`sys/gpuN_…` keys).
    pub gpus: Option<ExtraSource>,
}

impl SysMetrics {
    /// Sampling every `interval` (zero: off), without a GPU source.
    pub fn every(interval: Duration) -> SysMetrics {
        SysMetrics {
            interval,
            gpus: None,
        }
    }

    /// Sampling every `interval` (zero: off), with the GPUs through NVML as the extra source
    /// (`sys/gpuN_utilization_percent`, `sys/gpuN_memory_used_bytes`); nothing for them where
    /// NVML is absent.
    pub fn with_gpus(interval: Duration) -> SysMetrics {
        SysMetrics {
            interval,
            gpus: Some(Box::new(|| gpu_values(&crate::capture::gpu::sample()))),
        }
    }

    /// Starts sampling the child `pid` of `spawn` (its container when it runs one); `None` when
    /// sampling is off. Times are on the run's clock ([`crate::capture::host::now`], which tests
    /// may pin) advanced by the real time elapsed.
    pub fn start(self, spawn: &Spawn, pid: u32) -> Option<Sampler> {
        if self.interval.is_zero() {
            return None;
        }
        let target = match &spawn.container {
            Some((engine, name)) => Target::Container {
                engine: engine.clone(),
                name: name.clone(),
            },
            None => Target::Tree(pid),
        };
        let base = crate::capture::host::now().timestamp_millis() as f64 / 1000.0;
        let t0 = Instant::now();
        let clock = Box::new(move || base + t0.elapsed().as_secs_f64());
        Some(sysmetrics::start(target, self.interval, clock, self.gpus))
    }
}

/// Stores the sampler's points with the run's metrics (a warning when that fails).
pub fn store(ev: &dyn Events, store: &mut Store, run_id: &str, sampled: &Sampled) {
    if let Some(s) = &sampled.source {
        ev.debug(&format!("system metrics: sampled {s}"));
    }
    let points = &sampled.points;
    if points.is_empty() {
        return;
    }
    match store.insert_metrics(run_id, points) {
        Ok(w) => ev.debug(&format!(
            "stored {} system metric point(s) of {} key(s)",
            w.points, w.keys
        )),
        Err(e) => ev.warn(&format!(
            "could not store the system metrics of run {run_id}: {}",
            crate::error::report(e)
        )),
    }
}
/// The `sys/gpuN_…` values of one GPU sample.
pub fn gpu_values(samples: &[crate::capture::gpu::GpuSample]) -> Vec<(String, f64)> {
    use crate::capture::sysmetrics::{gpu_memory_key, gpu_utilization_key};
    samples
        .iter()
        .flat_map(|g| {
            [
                (gpu_utilization_key(g.index), g.utilization_percent),
                (gpu_memory_key(g.index), g.memory_used_bytes as f64),
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::capture::gpu::GpuSample;

    #[test]
    fn gpu_samples_become_sys_gpu_keys() {
        let v = super::gpu_values(&[
            GpuSample {
                index: 0,
                utilization_percent: 87.0,
                memory_used_bytes: 3 << 30,
                memory_total_bytes: 16 << 30,
            },
            GpuSample {
                index: 1,
                utilization_percent: 0.0,
                memory_used_bytes: 0,
                memory_total_bytes: 16 << 30,
            },
        ]);
        assert_eq!(
            v,
            vec![
                ("sys/gpu0_utilization_percent".to_string(), 87.0),
                (
                    "sys/gpu0_memory_used_bytes".to_string(),
                    (3u64 << 30) as f64
                ),
                ("sys/gpu1_utilization_percent".to_string(), 0.0),
                ("sys/gpu1_memory_used_bytes".to_string(), 0.0),
            ]
        );
    }
}
