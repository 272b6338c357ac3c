//! Where a run was scheduled: the Slurm job (cluster, job id, array task, partition, nodes, GPUs)
//! or the Kubernetes pod (pod, namespace, node), and its JSON shape in `--json` and exports:
//! `null`, or `{"kind": "slurm", "job_id": …, …}` / `{"kind": "kubernetes", "pod": …, …}` with
//! every field present (null when unknown). A Slurm job inside a pod carries the pod under
//! `"kubernetes"`. Reading it from the environment is `capture::scheduler`; its columns are
//! `store::scheduler`.

use serde::{Deserialize, Serialize};

/// Where the run was scheduled. Both parts can be present (Slurm running inside a pod).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulerContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm: Option<SlurmContext>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesContext>,
}

/// A Slurm job, from the `SLURM_*` variables `slurmd` sets in every job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlurmContext {
    /// `SLURM_CLUSTER_NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// `SLURM_JOB_ID` (older releases: `SLURM_JOBID`): the job's own id; for an array task this is
    /// the task's raw id, not the array's.
    pub job_id: String,
    /// `SLURM_ARRAY_JOB_ID`: the id shared by every task of a job array.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array_job_id: Option<String>,
    /// `SLURM_ARRAY_TASK_ID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array_task_id: Option<String>,
    /// `SLURM_STEP_ID`, set inside `srun` steps only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_id: Option<String>,
    /// `SLURM_JOB_NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// `SLURM_JOB_PARTITION`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// `SLURM_JOB_NODELIST` (older: `SLURM_NODELIST`), in Slurm's compressed form (`gpu[01-04]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_list: Option<String>,
    /// `SLURMD_NODENAME`: the node this process ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// GPU indexes allocated to the step or job (`SLURM_STEP_GPUS`, else `SLURM_JOB_GPUS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<String>,
    /// `SLURM_GPUS_ON_NODE`: how many GPUs the job holds on this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus_on_node: Option<String>,
    /// `SLURM_RESTART_COUNT`: how often the job was requeued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_count: Option<String>,
}

impl SlurmContext {
    /// The id a person uses for this job: `ARRAY_TASK` (e.g. `4_1`) for an array task, otherwise
    /// the job id.
    pub fn display_id(&self) -> String {
        match (&self.array_job_id, &self.array_task_id) {
            (Some(a), Some(t)) => format!("{a}_{t}"),
            _ => self.job_id.clone(),
        }
    }

    /// Whether `query` names this job: its raw id, its `ARRAY_TASK` id, or the array id (which
    /// matches every task of the array). What `ls --job ID` filters on.
    pub fn matches(&self, query: &str) -> bool {
        let query = query.trim();
        !query.is_empty()
            && (query == self.job_id
                || query == self.display_id()
                || self.array_job_id.as_deref() == Some(query))
    }
}

/// A Kubernetes pod. Kubernetes sets only `KUBERNETES_SERVICE_HOST` (and `HOSTNAME`, the pod
/// name unless the spec overrides it) by itself; the rest comes from the downward API when the pod
/// spec maps it to the conventional variables (see docs/cluster.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesContext {
    /// `POD_NAME`, else `HOSTNAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// `POD_NAMESPACE`, else the service account's namespace file (see `from_process`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `NODE_NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// `POD_UID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    /// `JOB_COMPLETION_INDEX`: the index of an Indexed Job's pod (set by Kubernetes itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_index: Option<String>,
}

/// The fields of a Slurm context in `--json`, in order (a test checks the list is complete).
pub const SLURM_FIELDS: &[&str] = &[
    "cluster",
    "job_id",
    "array_job_id",
    "array_task_id",
    "step_id",
    "job_name",
    "partition",
    "node_list",
    "node",
    "gpus",
    "gpus_on_node",
    "restart_count",
];

/// The fields of a Kubernetes context in `--json`.
pub const KUBERNETES_FIELDS: &[&str] = &["pod", "namespace", "node", "pod_uid", "completion_index"];

fn flat(value: serde_json::Value, fields: &[&str]) -> serde_json::Map<String, serde_json::Value> {
    let mut obj = match value {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    let mut out = serde_json::Map::new();
    for f in fields {
        out.insert(
            (*f).to_string(),
            obj.remove(*f).unwrap_or(serde_json::Value::Null),
        );
    }
    out
}

/// The DESIGN.md shape of a context (see the module doc).
pub fn to_json(ctx: &SchedulerContext) -> serde_json::Value {
    use serde_json::Value;
    let k8s = |k: &KubernetesContext| {
        flat(
            serde_json::to_value(k).expect("the pod context serialises"),
            KUBERNETES_FIELDS,
        )
    };
    let mut out = serde_json::Map::new();
    match (&ctx.slurm, &ctx.kubernetes) {
        (Some(s), k) => {
            out.insert("kind".into(), Value::from("slurm"));
            out.extend(flat(
                serde_json::to_value(s).expect("the job context serialises"),
                SLURM_FIELDS,
            ));
            if let Some(k) = k {
                out.insert("kubernetes".into(), Value::Object(k8s(k)));
            }
        }
        (None, Some(k)) => {
            out.insert("kind".into(), Value::from("kubernetes"));
            out.extend(k8s(k));
        }
        (None, None) => return Value::Null,
    }
    Value::Object(out)
}

/// Reads the DESIGN.md shape back (exports, `--json` of other versions).
pub fn from_json(value: serde_json::Value) -> Result<Option<SchedulerContext>, String> {
    use serde_json::Value;
    let mut obj = match value {
        Value::Null => return Ok(None),
        Value::Object(m) => m,
        other => return Err(format!("scheduler is {other}, not an object or null")),
    };
    let strip = |m: serde_json::Map<String, Value>| {
        Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).collect())
    };
    let kind = obj.remove("kind");
    match kind.as_ref().and_then(Value::as_str) {
        Some("slurm") => {
            let k8s = match obj.remove("kubernetes") {
                None | Some(Value::Null) => None,
                Some(Value::Object(m)) => Some(
                    serde_json::from_value::<KubernetesContext>(strip(m))
                        .map_err(|e| format!("scheduler.kubernetes: {e}"))?,
                ),
                Some(other) => return Err(format!("scheduler.kubernetes is {other}")),
            };
            let slurm: SlurmContext = serde_json::from_value(strip(obj))
                .map_err(|e| format!("scheduler (slurm): {e}"))?;
            if slurm.job_id.trim().is_empty() {
                return Err("scheduler (slurm) has an empty job_id".into());
            }
            Ok(Some(SchedulerContext {
                slurm: Some(slurm),
                kubernetes: k8s,
            }))
        }
        Some("kubernetes") => Ok(Some(SchedulerContext {
            slurm: None,
            kubernetes: Some(
                serde_json::from_value(strip(obj))
                    .map_err(|e| format!("scheduler (kubernetes): {e}"))?,
            ),
        })),
        _ => Err(format!(
            "scheduler.kind is {}, not \"slurm\" or \"kubernetes\"",
            kind.unwrap_or(Value::Null)
        )),
    }
}

/// The lines of `show`: `slurm job` and `k8s pod`, each one line of what is known.
pub fn describe(ctx: &SchedulerContext) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(s) = &ctx.slurm {
        let mut v = s.display_id();
        if s.array_task_id.is_some() {
            v.push_str(&format!(" (job {})", s.job_id));
        }
        let mut parts = Vec::new();
        for (what, val) in [
            ("cluster", &s.cluster),
            ("name", &s.job_name),
            ("partition", &s.partition),
            ("nodes", &s.node_list),
            ("node", &s.node),
            ("gpus", &s.gpus),
            ("step", &s.step_id),
            ("restarts", &s.restart_count),
        ] {
            if let Some(val) = val {
                parts.push(format!("{what} {val}"));
            }
        }
        if !parts.is_empty() {
            v.push_str(&format!(": {}", parts.join(", ")));
        }
        out.push(("slurm job", v));
    }
    if let Some(k) = &ctx.kubernetes {
        let pod = k.pod.as_deref().unwrap_or("(unknown pod)");
        let mut v = match &k.namespace {
            Some(ns) => format!("{ns}/{pod}"),
            None => pod.to_string(),
        };
        if let Some(n) = &k.node {
            v.push_str(&format!(" on node {n}"));
        }
        if let Some(i) = &k.completion_index {
            v.push_str(&format!(", index {i}"));
        }
        out.push(("k8s pod", v));
    }
    out
}

/// Every field of a context as `scheduler.FIELD` (`scheduler.kubernetes.FIELD` for a pod under a
/// job) → value, for `diff`; empty for none.
pub fn flat_fields(
    ctx: Option<&SchedulerContext>,
) -> std::collections::BTreeMap<String, serde_json::Value> {
    let mut out = std::collections::BTreeMap::new();
    let Some(serde_json::Value::Object(m)) = ctx.map(to_json) else {
        return out;
    };
    for (k, v) in m {
        match v {
            serde_json::Value::Object(inner) => {
                for (ik, iv) in inner {
                    out.insert(format!("scheduler.{k}.{ik}"), iv);
                }
            }
            v => {
                out.insert(format!("scheduler.{k}"), v);
            }
        }
    }
    out
}

/// `#[serde(with = …)]` for `Run::scheduler`: the DESIGN.md shape.
pub mod json {
    use super::*;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        ctx: &Option<SchedulerContext>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        use serde::Serialize;
        match ctx {
            None => s.serialize_none(),
            Some(c) => to_json(c).serialize(s),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SchedulerContext>, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        from_json(v).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> SchedulerContext {
        SchedulerContext {
            slurm: Some(SlurmContext {
                cluster: Some("c".into()),
                job_id: "42".into(),
                array_job_id: Some("40".into()),
                array_task_id: Some("2".into()),
                step_id: Some("0".into()),
                job_name: Some("n".into()),
                partition: Some("gpu".into()),
                node_list: Some("g[1-2]".into()),
                node: Some("g1".into()),
                gpus: Some("0,1".into()),
                gpus_on_node: Some("2".into()),
                restart_count: Some("1".into()),
            }),
            kubernetes: Some(KubernetesContext {
                pod: Some("p".into()),
                namespace: Some("ns".into()),
                node: Some("k1".into()),
                pod_uid: Some("u".into()),
                completion_index: Some("3".into()),
            }),
        }
    }

    #[test]
    fn field_lists_name_every_field() {
        let c = full();
        let s = serde_json::to_value(c.slurm.as_ref().unwrap()).unwrap();
        let mut keys: Vec<&str> = s.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        let mut want = SLURM_FIELDS.to_vec();
        keys.sort();
        want.sort();
        assert_eq!(keys, want);
        let k = serde_json::to_value(c.kubernetes.as_ref().unwrap()).unwrap();
        let mut keys: Vec<&str> = k.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        let mut want = KUBERNETES_FIELDS.to_vec();
        keys.sort();
        want.sort();
        assert_eq!(keys, want);
    }

    #[test]
    fn json_shape_round_trips() {
        let c = full();
        let v = to_json(&c);
        assert_eq!(v["kind"], "slurm");
        assert_eq!(v["job_id"], "42");
        assert_eq!(v["kubernetes"]["pod"], "p");
        assert_eq!(from_json(v).unwrap(), Some(c.clone()));
        // A bare job: absent facts are null, never omitted.
        let bare = SchedulerContext {
            slurm: Some(SlurmContext {
                job_id: "7".into(),
                ..Default::default()
            }),
            kubernetes: None,
        };
        let v = to_json(&bare);
        assert_eq!(v["cluster"], serde_json::Value::Null);
        assert!(v.as_object().unwrap().contains_key("partition"));
        assert!(!v.as_object().unwrap().contains_key("kubernetes"));
        assert_eq!(from_json(v).unwrap(), Some(bare));
        let pod = SchedulerContext {
            slurm: None,
            kubernetes: c.kubernetes.clone(),
        };
        let v = to_json(&pod);
        assert_eq!(v["kind"], "kubernetes");
        assert_eq!(v["namespace"], "ns");
        assert_eq!(from_json(v).unwrap(), Some(pod));
        assert_eq!(from_json(serde_json::Value::Null).unwrap(), None);
    }

    #[test]
    fn bad_shapes_are_refused() {
        assert!(from_json(serde_json::json!({"kind": "pbs"})).is_err());
        assert!(from_json(serde_json::json!({"job_id": "1"})).is_err());
        assert!(from_json(serde_json::json!({"kind": "slurm"})).is_err());
        assert!(from_json(serde_json::json!({"kind": "slurm", "job_id": ""})).is_err());
        assert!(from_json(serde_json::json!("42")).is_err());
    }
}
