//! The scheduler context of a run: the Slurm job (cluster, job id, array task, partition, nodes,
//! GPUs) or the Kubernetes pod (pod, namespace, node) it ran in, read from the environment the
//! scheduler gives the job. A pure function over an environment map; `from_process` feeds it the
//! real one.

use std::collections::BTreeMap;

use crate::record::scheduler::{KubernetesContext, SchedulerContext, SlurmContext};

/// Where a pod finds its namespace when the downward API does not pass it.
pub const SERVICE_ACCOUNT_NAMESPACE: &str =
    "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// The scheduler context described by `env`, or `None` outside any scheduler job.
///
/// Slurm is detected by a job id (`SLURM_JOB_ID`/`SLURM_JOBID`): variables like `SLURM_CONF` alone
/// are set on login nodes too. A pod is detected by `KUBERNETES_SERVICE_HOST`, which Kubernetes
/// puts into every container. Empty values count as absent.
pub fn detect(env: &BTreeMap<String, String>) -> Option<SchedulerContext> {
    let get = |k: &str| {
        env.get(k)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let first = |keys: &[&str]| keys.iter().find_map(|k| get(k));
    let slurm = first(&["SLURM_JOB_ID", "SLURM_JOBID"]).map(|job_id| SlurmContext {
        cluster: get("SLURM_CLUSTER_NAME"),
        job_id,
        array_job_id: get("SLURM_ARRAY_JOB_ID"),
        array_task_id: get("SLURM_ARRAY_TASK_ID"),
        step_id: first(&["SLURM_STEP_ID", "SLURM_STEPID"]),
        job_name: get("SLURM_JOB_NAME"),
        partition: get("SLURM_JOB_PARTITION"),
        node_list: first(&["SLURM_JOB_NODELIST", "SLURM_NODELIST"]),
        node: get("SLURMD_NODENAME"),
        gpus: first(&["SLURM_STEP_GPUS", "SLURM_JOB_GPUS"]),
        gpus_on_node: get("SLURM_GPUS_ON_NODE"),
        restart_count: get("SLURM_RESTART_COUNT"),
    });
    let kubernetes = get("KUBERNETES_SERVICE_HOST").map(|_| KubernetesContext {
        pod: first(&["POD_NAME", "HOSTNAME"]),
        namespace: get("POD_NAMESPACE"),
        node: get("NODE_NAME"),
        pod_uid: get("POD_UID"),
        completion_index: get("JOB_COMPLETION_INDEX"),
    });
    if slurm.is_none() && kubernetes.is_none() {
        return None;
    }
    Some(SchedulerContext { slurm, kubernetes })
}

/// The scheduler context of this process: `detect` over its environment (non-UTF-8 values are
/// ignored), with a pod's namespace taken from the service account file when `POD_NAMESPACE` is
/// not set.
pub fn from_process() -> Option<SchedulerContext> {
    let env: BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let mut ctx = detect(&env)?;
    if let Some(k) = ctx.kubernetes.as_mut() {
        if k.namespace.is_none() {
            k.namespace = std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty());
        }
    }
    Some(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn outside_any_scheduler_is_none() {
        assert_eq!(detect(&env(&[("HOME", "/root"), ("PATH", "/bin")])), None);
        // A login node has SLURM_CONF but no job.
        assert_eq!(
            detect(&env(&[("SLURM_CONF", "/etc/slurm/slurm.conf")])),
            None
        );
        assert_eq!(detect(&env(&[("SLURM_JOB_ID", "  ")])), None);
    }

    #[test]
    fn slurm_batch_job() {
        let ctx = detect(&env(&[
            ("SLURM_CLUSTER_NAME", "hpc"),
            ("SLURM_JOB_ID", "1234"),
            ("SLURM_JOB_NAME", "train"),
            ("SLURM_JOB_PARTITION", "gpu"),
            ("SLURM_JOB_NODELIST", "gpu[01-02]"),
            ("SLURMD_NODENAME", "gpu01"),
            ("SLURM_JOB_GPUS", "0,1"),
            ("SLURM_GPUS_ON_NODE", "2"),
        ]))
        .unwrap();
        assert_eq!(ctx.kubernetes, None);
        let s = ctx.slurm.unwrap();
        assert_eq!(s.cluster.as_deref(), Some("hpc"));
        assert_eq!(s.job_id, "1234");
        assert_eq!(s.display_id(), "1234");
        assert_eq!(s.job_name.as_deref(), Some("train"));
        assert_eq!(s.partition.as_deref(), Some("gpu"));
        assert_eq!(s.node_list.as_deref(), Some("gpu[01-02]"));
        assert_eq!(s.node.as_deref(), Some("gpu01"));
        assert_eq!(s.gpus.as_deref(), Some("0,1"));
        assert_eq!(s.gpus_on_node.as_deref(), Some("2"));
        assert_eq!(s.array_job_id, None);
        assert!(s.matches("1234"));
        assert!(!s.matches("123"));
        assert!(!s.matches(""));
    }

    #[test]
    fn step_gpus_win_over_job_gpus_and_old_names_are_read() {
        let s = detect(&env(&[
            ("SLURM_JOBID", "77"),
            ("SLURM_NODELIST", "n1"),
            ("SLURM_STEPID", "0"),
            ("SLURM_JOB_GPUS", "0,1,2,3"),
            ("SLURM_STEP_GPUS", "2"),
        ]))
        .unwrap()
        .slurm
        .unwrap();
        assert_eq!(s.job_id, "77");
        assert_eq!(s.node_list.as_deref(), Some("n1"));
        assert_eq!(s.step_id.as_deref(), Some("0"));
        assert_eq!(s.gpus.as_deref(), Some("2"));
    }

    #[test]
    fn slurm_array_task() {
        let s = detect(&env(&[
            ("SLURM_JOB_ID", "4711"),
            ("SLURM_ARRAY_JOB_ID", "4700"),
            ("SLURM_ARRAY_TASK_ID", "11"),
        ]))
        .unwrap()
        .slurm
        .unwrap();
        assert_eq!(s.display_id(), "4700_11");
        assert!(s.matches("4711"));
        assert!(s.matches("4700_11"));
        assert!(s.matches("4700"), "the array id matches all its tasks");
        assert!(!s.matches("4700_1"));
    }

    #[test]
    fn kubernetes_pod_with_downward_api() {
        let ctx = detect(&env(&[
            ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
            ("HOSTNAME", "train-abcde"),
            ("POD_NAME", "train-xyz"),
            ("POD_NAMESPACE", "ml"),
            ("NODE_NAME", "worker-3"),
            ("POD_UID", "0f6c"),
            ("JOB_COMPLETION_INDEX", "2"),
        ]))
        .unwrap();
        assert_eq!(ctx.slurm, None);
        let k = ctx.kubernetes.unwrap();
        assert_eq!(k.pod.as_deref(), Some("train-xyz"));
        assert_eq!(k.namespace.as_deref(), Some("ml"));
        assert_eq!(k.node.as_deref(), Some("worker-3"));
        assert_eq!(k.pod_uid.as_deref(), Some("0f6c"));
        assert_eq!(k.completion_index.as_deref(), Some("2"));
    }

    #[test]
    fn kubernetes_pod_without_downward_api_falls_back_to_hostname() {
        let k = detect(&env(&[
            ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
            ("HOSTNAME", "train-abcde"),
        ]))
        .unwrap()
        .kubernetes
        .unwrap();
        assert_eq!(k.pod.as_deref(), Some("train-abcde"));
        assert_eq!(k.namespace, None);
        assert_eq!(k.node, None);
        // HOSTNAME alone (any Linux shell) is not a pod.
        assert_eq!(detect(&env(&[("HOSTNAME", "laptop")])), None);
    }

    #[test]
    fn slurm_inside_a_pod_records_both() {
        let ctx = detect(&env(&[
            ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
            ("POD_NAME", "slurmd-0"),
            ("SLURM_JOB_ID", "5"),
        ]))
        .unwrap();
        assert_eq!(ctx.slurm.unwrap().job_id, "5");
        assert_eq!(ctx.kubernetes.unwrap().pod.as_deref(), Some("slurmd-0"));
    }

    #[test]
    fn json_round_trip_omits_absent_fields() {
        let ctx = detect(&env(&[
            ("SLURM_JOB_ID", "9"),
            ("SLURM_JOB_PARTITION", "debug"),
        ]))
        .unwrap();
        let json = serde_json::to_value(&ctx).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"slurm": {"job_id": "9", "partition": "debug"}})
        );
        let back: SchedulerContext = serde_json::from_value(json).unwrap();
        assert_eq!(back, ctx);
    }
}
