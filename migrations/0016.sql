-- Migration 16: the kept outputs `repro mlflow push` uploaded as MLflow artifacts (`outputs/…`),
-- one row per file and MLflow run, written as each upload is acknowledged: a re-push sends only
-- the files not listed with the same SHA-256, and an interrupted push resumes where it stopped.
-- Keyed by the MLflow run (a run re-created after a deletion in MLflow starts empty); no foreign
-- key, like `mlflow_pushes`: what a server holds does not go with a local run.
CREATE TABLE mlflow_artifacts (
    tracking_uri  TEXT NOT NULL,
    mlflow_run_id TEXT NOT NULL,
    path          TEXT NOT NULL,
    run_id        TEXT NOT NULL,
    sha256        TEXT NOT NULL,
    bytes         INTEGER NOT NULL,
    uploaded_at   TEXT NOT NULL,
    PRIMARY KEY (tracking_uri, mlflow_run_id, path)
) WITHOUT ROWID;
CREATE INDEX mlflow_artifacts_run ON mlflow_artifacts (run_id, tracking_uri);
