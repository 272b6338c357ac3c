-- What `repro mlflow push` sent to each MLflow tracking server (src/store/mlflow.rs): one row per
-- (server, experiment, run), so an unchanged run costs no request and a changed one sends only
-- what changed. No foreign key: `gc` of a local run does not delete what a server already holds.
CREATE TABLE IF NOT EXISTS mlflow_pushes (
    tracking_uri   TEXT NOT NULL,                       -- normalised (no trailing slash)
    experiment     TEXT NOT NULL,                       -- experiment name
    run_id         TEXT NOT NULL,                       -- repro run id
    mlflow_run_id  TEXT NOT NULL,
    experiment_id  TEXT NOT NULL,
    pushed_hash    TEXT NOT NULL,                       -- sha256 of everything pushed
    params_json    TEXT NOT NULL,                       -- params as the server holds them
    tags_json      TEXT NOT NULL,                       -- tags repro set, as the server holds them
    state_hash     TEXT NOT NULL,                       -- status, end time, name
    inputs_hash    TEXT NOT NULL,                       -- datasets logged with runs/log-inputs
    artifacts_hash TEXT NOT NULL,                       -- repro/ artifacts uploaded
    metrics_json   TEXT NOT NULL,                       -- {key: points pushed}
    pushed_at      TEXT NOT NULL,                       -- RFC 3339 UTC
    PRIMARY KEY (tracking_uri, experiment, run_id)
) WITHOUT ROWID;
