-- Migration 12: the change-stamp triggers of migration 11, each row's stamp written with one
-- UPSERT instead of an UPDATE and an INSERT … WHERE NOT EXISTS. Same effect (every insert, update
-- or delete of a row belonging to a run gives the run the counter's next number), less SQL for
-- SQLite to parse each time a process opens the database (about half the open's cost: BENCHMARKS.md
-- section 1) and fewer statements per changed row.
DROP TRIGGER run_datasets_changed_insert;
CREATE TRIGGER run_datasets_changed_insert AFTER INSERT ON run_datasets
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (NEW.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
DROP TRIGGER run_datasets_changed_update;
CREATE TRIGGER run_datasets_changed_update AFTER UPDATE ON run_datasets
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (NEW.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
    INSERT INTO run_changes (run_id, seq) SELECT OLD.run_id, seq FROM run_change_counter WHERE OLD.run_id <> NEW.run_id
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
DROP TRIGGER run_datasets_changed_delete;
CREATE TRIGGER run_datasets_changed_delete AFTER DELETE ON run_datasets
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (OLD.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
DROP TRIGGER run_outputs_changed_insert;
CREATE TRIGGER run_outputs_changed_insert AFTER INSERT ON run_outputs
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (NEW.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
DROP TRIGGER run_outputs_changed_update;
CREATE TRIGGER run_outputs_changed_update AFTER UPDATE ON run_outputs
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (NEW.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
    INSERT INTO run_changes (run_id, seq) SELECT OLD.run_id, seq FROM run_change_counter WHERE OLD.run_id <> NEW.run_id
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
DROP TRIGGER run_outputs_changed_delete;
CREATE TRIGGER run_outputs_changed_delete AFTER DELETE ON run_outputs
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (OLD.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
DROP TRIGGER run_env_changed_insert;
CREATE TRIGGER run_env_changed_insert AFTER INSERT ON run_env
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (NEW.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
DROP TRIGGER run_env_changed_update;
CREATE TRIGGER run_env_changed_update AFTER UPDATE ON run_env
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (NEW.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
    INSERT INTO run_changes (run_id, seq) SELECT OLD.run_id, seq FROM run_change_counter WHERE OLD.run_id <> NEW.run_id
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
DROP TRIGGER run_env_changed_delete;
CREATE TRIGGER run_env_changed_delete AFTER DELETE ON run_env
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (OLD.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
DROP TRIGGER run_params_changed_insert;
CREATE TRIGGER run_params_changed_insert AFTER INSERT ON run_params
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (NEW.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
DROP TRIGGER run_params_changed_update;
CREATE TRIGGER run_params_changed_update AFTER UPDATE ON run_params
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (NEW.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
    INSERT INTO run_changes (run_id, seq) SELECT OLD.run_id, seq FROM run_change_counter WHERE OLD.run_id <> NEW.run_id
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
DROP TRIGGER run_params_changed_delete;
CREATE TRIGGER run_params_changed_delete AFTER DELETE ON run_params
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (OLD.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
DROP TRIGGER run_tags_changed_insert;
CREATE TRIGGER run_tags_changed_insert AFTER INSERT ON run_tags
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (NEW.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
DROP TRIGGER run_tags_changed_update;
CREATE TRIGGER run_tags_changed_update AFTER UPDATE ON run_tags
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (NEW.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
    INSERT INTO run_changes (run_id, seq) SELECT OLD.run_id, seq FROM run_change_counter WHERE OLD.run_id <> NEW.run_id
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
DROP TRIGGER run_tags_changed_delete;
CREATE TRIGGER run_tags_changed_delete AFTER DELETE ON run_tags
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (OLD.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
DROP TRIGGER run_notes_changed_insert;
CREATE TRIGGER run_notes_changed_insert AFTER INSERT ON run_notes
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (NEW.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
DROP TRIGGER run_notes_changed_update;
CREATE TRIGGER run_notes_changed_update AFTER UPDATE ON run_notes
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (NEW.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
    INSERT INTO run_changes (run_id, seq) SELECT OLD.run_id, seq FROM run_change_counter WHERE OLD.run_id <> NEW.run_id
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
DROP TRIGGER run_notes_changed_delete;
CREATE TRIGGER run_notes_changed_delete AFTER DELETE ON run_notes
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (OLD.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
DROP TRIGGER run_attestations_changed_insert;
CREATE TRIGGER run_attestations_changed_insert AFTER INSERT ON run_attestations
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (NEW.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
DROP TRIGGER run_attestations_changed_update;
CREATE TRIGGER run_attestations_changed_update AFTER UPDATE ON run_attestations
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (NEW.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
    INSERT INTO run_changes (run_id, seq) SELECT OLD.run_id, seq FROM run_change_counter WHERE OLD.run_id <> NEW.run_id
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
DROP TRIGGER run_attestations_changed_delete;
CREATE TRIGGER run_attestations_changed_delete AFTER DELETE ON run_attestations
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (OLD.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
DROP TRIGGER run_archives_changed_insert;
CREATE TRIGGER run_archives_changed_insert AFTER INSERT ON run_archives
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (NEW.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
DROP TRIGGER run_archives_changed_update;
CREATE TRIGGER run_archives_changed_update AFTER UPDATE ON run_archives
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (NEW.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
    INSERT INTO run_changes (run_id, seq) SELECT OLD.run_id, seq FROM run_change_counter WHERE OLD.run_id <> NEW.run_id
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
DROP TRIGGER run_archives_changed_delete;
CREATE TRIGGER run_archives_changed_delete AFTER DELETE ON run_archives
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (OLD.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
DROP TRIGGER run_metrics_changed_insert;
CREATE TRIGGER run_metrics_changed_insert AFTER INSERT ON run_metrics
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (NEW.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
DROP TRIGGER run_metrics_changed_update;
CREATE TRIGGER run_metrics_changed_update AFTER UPDATE ON run_metrics
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (NEW.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
    INSERT INTO run_changes (run_id, seq) SELECT OLD.run_id, seq FROM run_change_counter WHERE OLD.run_id <> NEW.run_id
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
DROP TRIGGER run_metrics_changed_delete;
CREATE TRIGGER run_metrics_changed_delete AFTER DELETE ON run_metrics
BEGIN
    UPDATE run_change_counter SET seq = seq + 1;
    INSERT INTO run_changes (run_id, seq) VALUES (OLD.run_id, (SELECT seq FROM run_change_counter))
        ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END;
