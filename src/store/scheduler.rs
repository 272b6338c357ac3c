//! The scheduler context of a run in the store and in `--json`: the `scheduler` column holds the
//! JSON of [`SchedulerContext`], `scheduler_job_id` / `scheduler_array_job_id` the Slurm ids that
//! `ls --job` looks up (indexed); `--json` and exports use the flat shape of DESIGN.md:
//! `null`, or `{"kind": "slurm", "job_id": …, …}` / `{"kind": "kubernetes", "pod": …, …}` with
//! every field present (null when unknown). A Slurm job inside a pod carries the pod under
//! `"kubernetes"`.

use rusqlite::Row;

use crate::capture::scheduler::{KubernetesContext, SchedulerContext, SlurmContext};

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

/// The values of the three `runs` columns for a context.
pub(super) fn columns(
    ctx: Option<&SchedulerContext>,
) -> (Option<String>, Option<String>, Option<String>) {
    let Some(ctx) = ctx else {
        return (None, None, None);
    };
    let text = serde_json::to_string(ctx).expect("the scheduler context serialises");
    let slurm = ctx.slurm.as_ref();
    (
        Some(text),
        slurm.map(|s| s.job_id.clone()),
        slurm.and_then(|s| s.array_job_id.clone()),
    )
}

/// Reads the `scheduler` column of a row selected with `RUN_COLUMNS`.
pub(super) fn from_row(r: &Row) -> rusqlite::Result<Option<SchedulerContext>> {
    let text: Option<String> = r.get("scheduler")?;
    match text {
        None => Ok(None),
        Some(t) => serde_json::from_str(&t).map(Some).map_err(|e| {
            let i = r.as_ref().column_index("scheduler").unwrap_or(0);
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
        }),
    }
}

/// The SQL condition (with `?` bound to `job` `n` times, in order) of `ls --job JOB`: the raw
/// job id, the array id (every task), or `ARRAY_TASK` (one task) — as
/// [`SlurmContext::matches`] defines it.
pub fn job_condition(job: &str, next_param: usize) -> (String, Vec<String>) {
    let job = job.trim();
    let p = next_param;
    match job.split_once('_') {
        Some((array, task)) => (
            format!(
                "(scheduler_job_id = ?{p} OR (scheduler_array_job_id = ?{} AND json_extract(scheduler, '$.slurm.array_task_id') = ?{}))",
                p + 1,
                p + 2
            ),
            vec![job.to_string(), array.to_string(), task.to_string()],
        ),
        None => (
            format!("(scheduler_job_id = ?{p} OR scheduler_array_job_id = ?{p})"),
            vec![job.to_string()],
        ),
    }
}

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
    use std::collections::BTreeMap;

    fn full() -> SchedulerContext {
        let env: BTreeMap<String, String> = [
            ("SLURM_JOB_ID", "42"),
            ("SLURM_CLUSTER_NAME", "c"),
            ("SLURM_ARRAY_JOB_ID", "40"),
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_STEP_ID", "0"),
            ("SLURM_JOB_NAME", "n"),
            ("SLURM_JOB_PARTITION", "gpu"),
            ("SLURM_JOB_NODELIST", "g[1-2]"),
            ("SLURMD_NODENAME", "g1"),
            ("SLURM_JOB_GPUS", "0,1"),
            ("SLURM_GPUS_ON_NODE", "2"),
            ("SLURM_RESTART_COUNT", "1"),
            ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
            ("POD_NAME", "p"),
            ("POD_NAMESPACE", "ns"),
            ("NODE_NAME", "k1"),
            ("POD_UID", "u"),
            ("JOB_COMPLETION_INDEX", "3"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        crate::capture::scheduler::detect(&env).unwrap()
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

    #[test]
    fn job_condition_matches_ids_arrays_and_tasks() {
        let (sql, args) = job_condition("42", 3);
        assert_eq!(
            sql,
            "(scheduler_job_id = ?3 OR scheduler_array_job_id = ?3)"
        );
        assert_eq!(args, vec!["42"]);
        let (sql, args) = job_condition("40_2", 1);
        assert!(sql.contains("?3"), "{sql}");
        assert_eq!(args, vec!["40_2", "40", "2"]);
    }
}
