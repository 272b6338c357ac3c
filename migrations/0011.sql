-- Migration 11: the change stamp of `repro mlflow push` (src/ops/mlflow.rs, docs/mlflow.md).
-- Every insert, update or delete of a row that belongs to a run (datasets, outputs, env, params,
-- tags, notes, attestations, archives, metric series summaries) gives the run a new number from
-- one counter, so "the run's number is the one recorded at its last push" proves that none of
-- them changed, without loading them. A run's own columns are read directly (one query for all
-- runs). Metric points are only ever appended together with their series' summary row, which
-- carries the count. A run without a row here has had no child row changed since this migration.
CREATE TABLE run_change_counter (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    seq INTEGER NOT NULL
);
INSERT INTO run_change_counter (one, seq) VALUES (1, 0);
CREATE TABLE run_changes (
    run_id TEXT PRIMARY KEY NOT NULL,
    seq    INTEGER NOT NULL                             -- from run_change_counter, never reused
) WITHOUT ROWID;
CREATE TRIGGER run_datasets_changed_insert AFTER INSERT ON run_datasets
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    UPDATE run_changes SET seq = (SELECT seq FROM run_change_counter) WHERE run_id = NEW.run_id;
    INSERT INTO run_changes (run_id, seq) SELECT NEW.run_id, seq FROM run_change_counter
        WHERE NOT EXISTS (SELECT 1 FROM run_changes WHERE run_id = NEW.run_id);
END;
CREATE TRIGGER run_datasets_changed_update AFTER UPDATE ON run_datasets
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    UPDATE run_changes SET seq = (SELECT seq FROM run_change_counter) WHERE run_id = NEW.run_id;
    INSERT INTO run_changes (run_id, seq) SELECT NEW.run_id, seq FROM run_change_counter
        WHERE NOT EXISTS (SELECT 1 FROM run_changes WHERE run_id = NEW.run_id);
    UPDATE run_changes SET seq = (SELECT seq FROM run_change_counter) WHERE run_id = OLD.run_id AND OLD.run_id <> NEW.run_id;
    INSERT INTO run_changes (run_id, seq) SELECT OLD.run_id, seq FROM run_change_counter
        WHERE NOT EXISTS (SELECT 1 FROM run_changes WHERE run_id = OLD.run_id) AND OLD.run_id <> NEW.run_id;
END;
CREATE TRIGGER run_datasets_changed_delete AFTER DELETE ON run_datasets
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    UPDATE run_changes SET seq = (SELECT seq FROM run_change_counter) WHERE run_id = OLD.run_id;
    INSERT INTO run_changes (run_id, seq) SELECT OLD.run_id, seq FROM run_change_counter
        WHERE NOT EXISTS (SELECT 1 FROM run_changes WHERE run_id = OLD.run_id);
END;
CREATE TRIGGER run_outputs_changed_insert AFTER INSERT ON run_outputs
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    UPDATE run_changes SET seq = (SELECT seq FROM run_change_counter) WHERE run_id = NEW.run_id;
    INSERT INTO run_changes (run_id, seq) SELECT NEW.run_id, seq FROM run_change_counter
        WHERE NOT EXISTS (SELECT 1 FROM run_changes WHERE run_id = NEW.run_id);
END;
CREATE TRIGGER run_outputs_changed_update AFTER UPDATE ON run_outputs
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    UPDATE run_changes SET seq = (SELECT seq FROM run_change_counter) WHERE run_id = NEW.run_id;
    INSERT INTO run_changes (run_id, seq) SELECT NEW.run_id, seq FROM run_change_counter
        WHERE NOT EXISTS (SELECT 1 FROM run_changes WHERE run_id = NEW.run_id);
    UPDATE run_changes SET seq = (SELECT seq FROM run_change_counter) WHERE run_id = OLD.run_id AND OLD.run_id <> NEW.run_id;
    INSERT INTO run_changes (run_id, seq) SELECT OLD.run_id, seq FROM run_change_counter
        WHERE NOT EXISTS (SELECT 1 FROM run_changes WHERE run_id = OLD.run_id) AND OLD.run_id <> NEW.run_id;
END;
CREATE TRIGGER run_outputs_changed_delete AFTER DELETE ON run_outputs
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    UPDATE run_changes SET seq = (SELECT seq FROM run_change_counter) WHERE run_id = OLD.run_id;
    INSERT INTO run_changes (run_id, seq) SELECT OLD.run_id, seq FROM run_change_counter
        WHERE NOT EXISTS (SELECT 1 FROM run_changes WHERE run_id = OLD.run_id);
END;
CREATE TRIGGER run_env_changed_insert AFTER INSERT ON run_env
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    UPDATE run_changes SET seq = (SELECT seq FROM run_change_counter) WHERE run_id = NEW.run_id;
    INSERT INTO run_changes (run_id, seq) SELECT NEW.run_id, seq FROM run_change_counter
        WHERE NOT EXISTS (SELECT 1 FROM run_changes WHERE run_id = NEW.run_id);
END;
CREATE TRIGGER run_env_changed_update AFTER UPDATE ON run_env
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    UPDATE run_changes SET seq = (SELECT seq FROM run_change_counter) WHERE run_id = NEW.run_id;
    INSERT INTO run_changes (run_id, seq) SELECT NEW.run_id, seq FROM run_change_counter
        WHERE NOT EXISTS (SELECT 1 FROM run_changes WHERE run_id = NEW.run_id);
    UPDATE run_changes SET seq = (SELECT seq FROM run_change_counter) WHERE run_id = OLD.run_id AND OLD.run_id <> NEW.run_id;
    INSERT INTO run_changes (run_id, seq) SELECT OLD.run_id, seq FROM run_change_counter
        WHERE NOT EXISTS (SELECT 1 FROM run_changes WHERE run_id = OLD.run_id) AND OLD.run_id <> NEW.run_id;
END;
CREATE TRIGGER run_env_changed_delete AFTER DELETE ON run_env
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    UPDATE run_changes SET seq = (SELECT seq FROM run_change_counter) WHERE run_id = OLD.run_id;
    INSERT INTO run_changes (run_id, seq) SELECT OLD.run_id, seq FROM run_change_counter
        WHERE NOT EXISTS (SELECT 1 FROM run_changes WHERE run_id = OLD.run_id);
END;
CREATE TRIGGER run_params_changed_insert AFTER INSERT ON run_params
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    UPDATE run_changes SET seq = (SELECT seq FROM run_change_counter) WHERE run_id = NEW.run_id;
    INSERT INTO run_changes (run_id, seq) SELECT NEW.run_id, seq FROM run_change_counter
        WHERE NOT EXISTS (SELECT 1 FROM run_changes WHERE run_id = NEW.run_id);
END;
CREATE TRIGGER run_params_changed_update AFTER UPDATE ON run_params
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    UPDATE run_changes SET seq = (SELECT seq FROM run_change_counter) WHERE run_id = NEW.run_id;
    INSERT INTO run_changes (run_id, seq) SELECT NEW.run_id, seq FROM run_change_counter
        WHERE NOT EXISTS (SELECT 1 FROM run_changes WHERE run_id = NEW.run_id);
    UPDATE run_changes SET seq = (SELECT seq FROM run_change_counter) WHERE run_id = OLD.run_id AND OLD.run_id <> NEW.run_id;
    INSERT INTO run_changes (run_id, seq) SELECT OLD.run_id, seq FROM run_change_counter
        WHERE NOT EXISTS (SELECT 1 FROM run_changes WHERE run_id = OLD.run_id) AND OLD.run_id <> NEW.run_id;
END;
CREATE TRIGGER run_params_changed_delete AFTER DELETE ON run_params
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    UPDATE run_changes SET seq = (SELECT seq FROM run_change_counter) WHERE run_id = OLD.run_id;
    INSERT INTO run_changes (run_id, seq) SELECT OLD.run_id, seq FROM run_change_counter
        WHERE NOT EXISTS (SELECT 1 FROM run_changes WHERE run_id = OLD.run_id);
END;
CREATE TRIGGER run_tags_changed_insert AFTER INSERT ON run_tags
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    UPDATE run_changes SET seq = (SELECT seq FROM run_change_counter) WHERE run_id = NEW.run_id;
    INSERT INTO run_changes (run_id, seq) SELECT NEW.run_id, seq FROM run_change_counter
        WHERE NOT EXISTS (SELECT 1 FROM run_changes WHERE run_id = NEW.run_id);
END;
CREATE TRIGGER run_tags_changed_update AFTER UPDATE ON run_tags
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    UPDATE run_changes SET seq = (SELECT seq FROM run_change_counter) WHERE run_id = NEW.run_id;
    INSERT INTO run_changes (run_id, seq) SELECT NEW.run_id, seq FROM run_change_counter
        WHERE NOT EXISTS (SELECT 1 FROM run_changes WHERE run_id = NEW.run_id);
    UPDATE run_changes SET seq = (SELECT seq FROM run_change_counter) WHERE run_id = OLD.run_id AND OLD.run_id <> NEW.run_id;
    INSERT INTO run_changes (run_id, seq) SELECT OLD.run_id, seq FROM run_change_counter
        WHERE NOT EXISTS (SELECT 1 FROM run_changes WHERE run_id = OLD.run_id) AND OLD.run_id <> NEW.run_id;
END;
CREATE TRIGGER run_tags_changed_delete AFTER DELETE ON run_tags
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    UPDATE run_changes SET seq = (SELECT seq FROM run_change_counter) WHERE run_id = OLD.run_id;
    INSERT INTO run_changes (run_id, seq) SELECT OLD.run_id, seq FROM run_change_counter
        WHERE NOT EXISTS (SELECT 1 FROM run_changes WHERE run_id = OLD.run_id);
END;
CREATE TRIGGER run_notes_changed_insert AFTER INSERT ON run_notes
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    UPDATE run_changes SET seq = (SELECT seq FROM run_change_counter) WHERE run_id = NEW.run_id;
    INSERT INTO run_changes (run_id, seq) SELECT NEW.run_id, seq FROM run_change_counter
        WHERE NOT EXISTS (SELECT 1 FROM run_changes WHERE run_id = NEW.run_id);
END;
CREATE TRIGGER run_notes_changed_update AFTER UPDATE ON run_notes
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    UPDATE run_changes SET seq = (SELECT seq FROM run_change_counter) WHERE run_id = NEW.run_id;
    INSERT INTO run_changes (run_id, seq) SELECT NEW.run_id, seq FROM run_change_counter
        WHERE NOT EXISTS (SELECT 1 FROM run_changes WHERE run_id = NEW.run_id);
    UPDATE run_changes SET seq = (SELECT seq FROM run_change_counter) WHERE run_id = OLD.run_id AND OLD.run_id <> NEW.run_id;
    INSERT INTO run_changes (run_id, seq) SELECT OLD.run_id, seq FROM run_change_counter
        WHERE NOT EXISTS (SELECT 1 FROM run_changes WHERE run_id = OLD.run_id) AND OLD.run_id <> NEW.run_id;
END;
CREATE TRIGGER run_notes_changed_delete AFTER DELETE ON run_notes
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    UPDATE run_changes SET seq = (SELECT seq FROM run_change_counter) WHERE run_id = OLD.run_id;
    INSERT INTO run_changes (run_id, seq) SELECT OLD.run_id, seq FROM run_change_counter
        WHERE NOT EXISTS (SELECT 1 FROM run_changes WHERE run_id = OLD.run_id);
END;
CREATE TRIGGER run_attestations_changed_insert AFTER INSERT ON run_attestations
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    UPDATE run_changes SET seq = (SELECT seq FROM run_change_counter) WHERE run_id = NEW.run_id;
    INSERT INTO run_changes (run_id, seq) SELECT NEW.run_id, seq FROM run_change_counter
        WHERE NOT EXISTS (SELECT 1 FROM run_changes WHERE run_id = NEW.run_id);
END;
CREATE TRIGGER run_attestations_changed_update AFTER UPDATE ON run_attestations
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    UPDATE run_changes SET seq = (SELECT seq FROM run_change_counter) WHERE run_id = NEW.run_id;
    INSERT INTO run_changes (run_id, seq) SELECT NEW.run_id, seq FROM run_change_counter
        WHERE NOT EXISTS (SELECT 1 FROM run_changes WHERE run_id = NEW.run_id);
    UPDATE run_changes SET seq = (SELECT seq FROM run_change_counter) WHERE run_id = OLD.run_id AND OLD.run_id <> NEW.run_id;
    INSERT INTO run_changes (run_id, seq) SELECT OLD.run_id, seq FROM run_change_counter
        WHERE NOT EXISTS (SELECT 1 FROM run_changes WHERE run_id = OLD.run_id) AND OLD.run_id <> NEW.run_id;
END;
CREATE TRIGGER run_attestations_changed_delete AFTER DELETE ON run_attestations
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    UPDATE run_changes SET seq = (SELECT seq FROM run_change_counter) WHERE run_id = OLD.run_id;
    INSERT INTO run_changes (run_id, seq) SELECT OLD.run_id, seq FROM run_change_counter
        WHERE NOT EXISTS (SELECT 1 FROM run_changes WHERE run_id = OLD.run_id);
END;
CREATE TRIGGER run_archives_changed_insert AFTER INSERT ON run_archives
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    UPDATE run_changes SET seq = (SELECT seq FROM run_change_counter) WHERE run_id = NEW.run_id;
    INSERT INTO run_changes (run_id, seq) SELECT NEW.run_id, seq FROM run_change_counter
        WHERE NOT EXISTS (SELECT 1 FROM run_changes WHERE run_id = NEW.run_id);
END;
CREATE TRIGGER run_archives_changed_update AFTER UPDATE ON run_archives
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    UPDATE run_changes SET seq = (SELECT seq FROM run_change_counter) WHERE run_id = NEW.run_id;
    INSERT INTO run_changes (run_id, seq) SELECT NEW.run_id, seq FROM run_change_counter
        WHERE NOT EXISTS (SELECT 1 FROM run_changes WHERE run_id = NEW.run_id);
    UPDATE run_changes SET seq = (SELECT seq FROM run_change_counter) WHERE run_id = OLD.run_id AND OLD.run_id <> NEW.run_id;
    INSERT INTO run_changes (run_id, seq) SELECT OLD.run_id, seq FROM run_change_counter
        WHERE NOT EXISTS (SELECT 1 FROM run_changes WHERE run_id = OLD.run_id) AND OLD.run_id <> NEW.run_id;
END;
CREATE TRIGGER run_archives_changed_delete AFTER DELETE ON run_archives
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    UPDATE run_changes SET seq = (SELECT seq FROM run_change_counter) WHERE run_id = OLD.run_id;
    INSERT INTO run_changes (run_id, seq) SELECT OLD.run_id, seq FROM run_change_counter
        WHERE NOT EXISTS (SELECT 1 FROM run_changes WHERE run_id = OLD.run_id);
END;
CREATE TRIGGER run_metrics_changed_insert AFTER INSERT ON run_metrics
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    UPDATE run_changes SET seq = (SELECT seq FROM run_change_counter) WHERE run_id = NEW.run_id;
    INSERT INTO run_changes (run_id, seq) SELECT NEW.run_id, seq FROM run_change_counter
        WHERE NOT EXISTS (SELECT 1 FROM run_changes WHERE run_id = NEW.run_id);
END;
CREATE TRIGGER run_metrics_changed_update AFTER UPDATE ON run_metrics
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    UPDATE run_changes SET seq = (SELECT seq FROM run_change_counter) WHERE run_id = NEW.run_id;
    INSERT INTO run_changes (run_id, seq) SELECT NEW.run_id, seq FROM run_change_counter
        WHERE NOT EXISTS (SELECT 1 FROM run_changes WHERE run_id = NEW.run_id);
    UPDATE run_changes SET seq = (SELECT seq FROM run_change_counter) WHERE run_id = OLD.run_id AND OLD.run_id <> NEW.run_id;
    INSERT INTO run_changes (run_id, seq) SELECT OLD.run_id, seq FROM run_change_counter
        WHERE NOT EXISTS (SELECT 1 FROM run_changes WHERE run_id = OLD.run_id) AND OLD.run_id <> NEW.run_id;
END;
CREATE TRIGGER run_metrics_changed_delete AFTER DELETE ON run_metrics
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    UPDATE run_changes SET seq = (SELECT seq FROM run_change_counter) WHERE run_id = OLD.run_id;
    INSERT INTO run_changes (run_id, seq) SELECT OLD.run_id, seq FROM run_change_counter
        WHERE NOT EXISTS (SELECT 1 FROM run_changes WHERE run_id = OLD.run_id);
END;
CREATE TRIGGER runs_changes_forget AFTER DELETE ON runs
BEGIN
    DELETE FROM run_changes WHERE run_id = OLD.id;
END;
