-- Migration 23: one row per dataset version the runs read (name, version, digest), kept up to
-- date by triggers on run_datasets, so that `repro ui`'s Datasets page reads a row a version
-- instead of grouping every dataset row of every run (30 s over 1,000,000 runs).
-- `vkey`/`dkey` are the version and digest with '' for none (a key cannot hold NULLs that
-- compare equal). `first_run`/`last_run`: the smallest and largest run ids (ULIDs, which sort
-- by the time the run started); `readings`: the dataset rows (runs) that read it.
CREATE TABLE dataset_versions (
    name      TEXT NOT NULL,
    vkey      TEXT NOT NULL,
    dkey      TEXT NOT NULL,
    kind      TEXT NOT NULL,
    uri       TEXT,
    files     INTEGER,
    bytes     INTEGER,
    readings  INTEGER NOT NULL,
    first_run TEXT NOT NULL,
    last_run  TEXT NOT NULL,
    PRIMARY KEY (name, vkey, dkey)
) WITHOUT ROWID;
INSERT INTO dataset_versions (name, vkey, dkey, kind, uri, files, bytes, readings, first_run, last_run)
    SELECT name, ifnull(version, ''), ifnull(digest, ''), min(kind), min(uri), max(files), max(bytes),
           count(*), min(run_id), max(run_id)
    FROM run_datasets GROUP BY name, ifnull(version, ''), ifnull(digest, '');
CREATE TRIGGER dataset_versions_insert AFTER INSERT ON run_datasets
BEGIN
    INSERT INTO dataset_versions (name, vkey, dkey, kind, uri, files, bytes, readings, first_run, last_run)
    VALUES (NEW.name, ifnull(NEW.version, ''), ifnull(NEW.digest, ''), NEW.kind, NEW.uri, NEW.files,
            NEW.bytes, 1, NEW.run_id, NEW.run_id)
    ON CONFLICT (name, vkey, dkey) DO UPDATE SET
        readings = readings + 1,
        uri = coalesce(uri, excluded.uri),
        files = coalesce(max(files, excluded.files), files, excluded.files),
        bytes = coalesce(max(bytes, excluded.bytes), bytes, excluded.bytes),
        first_run = min(first_run, excluded.first_run),
        last_run = max(last_run, excluded.last_run);
END;
CREATE TRIGGER dataset_versions_delete AFTER DELETE ON run_datasets
BEGIN
    UPDATE dataset_versions SET
        readings = readings - 1,
        first_run = CASE WHEN first_run = OLD.run_id THEN ifnull((SELECT min(run_id) FROM run_datasets
            WHERE name = OLD.name AND version IS OLD.version AND digest IS OLD.digest), first_run)
            ELSE first_run END,
        last_run = CASE WHEN last_run = OLD.run_id THEN ifnull((SELECT max(run_id) FROM run_datasets
            WHERE name = OLD.name AND version IS OLD.version AND digest IS OLD.digest), last_run)
            ELSE last_run END
    WHERE name = OLD.name AND vkey = ifnull(OLD.version, '') AND dkey = ifnull(OLD.digest, '');
    DELETE FROM dataset_versions
    WHERE name = OLD.name AND vkey = ifnull(OLD.version, '') AND dkey = ifnull(OLD.digest, '')
      AND readings <= 0;
END;
CREATE TRIGGER dataset_versions_update AFTER UPDATE OF run_id, name, version, digest ON run_datasets
BEGIN
    UPDATE dataset_versions SET
        readings = readings - 1,
        first_run = CASE WHEN first_run = OLD.run_id THEN ifnull((SELECT min(run_id) FROM run_datasets
            WHERE name = OLD.name AND version IS OLD.version AND digest IS OLD.digest), first_run)
            ELSE first_run END,
        last_run = CASE WHEN last_run = OLD.run_id THEN ifnull((SELECT max(run_id) FROM run_datasets
            WHERE name = OLD.name AND version IS OLD.version AND digest IS OLD.digest), last_run)
            ELSE last_run END
    WHERE name = OLD.name AND vkey = ifnull(OLD.version, '') AND dkey = ifnull(OLD.digest, '');
    DELETE FROM dataset_versions
    WHERE name = OLD.name AND vkey = ifnull(OLD.version, '') AND dkey = ifnull(OLD.digest, '')
      AND readings <= 0;
    INSERT INTO dataset_versions (name, vkey, dkey, kind, uri, files, bytes, readings, first_run, last_run)
    VALUES (NEW.name, ifnull(NEW.version, ''), ifnull(NEW.digest, ''), NEW.kind, NEW.uri, NEW.files,
            NEW.bytes, 1, NEW.run_id, NEW.run_id)
    ON CONFLICT (name, vkey, dkey) DO UPDATE SET
        readings = readings + 1,
        uri = coalesce(uri, excluded.uri),
        files = coalesce(max(files, excluded.files), files, excluded.files),
        bytes = coalesce(max(bytes, excluded.bytes), bytes, excluded.bytes),
        first_run = min(first_run, excluded.first_run),
        last_run = max(last_run, excluded.last_run);
END;

-- The same for the images the runs used: one row per (reference as written, digest), kept by
-- triggers on runs, for the Images page (2 s over 1,000,000 runs when grouped from runs).
CREATE TABLE image_uses (
    ref       TEXT NOT NULL,
    dkey      TEXT NOT NULL,
    runs      INTEGER NOT NULL,
    first_run TEXT NOT NULL,
    last_run  TEXT NOT NULL,
    PRIMARY KEY (ref, dkey)
) WITHOUT ROWID;
INSERT INTO image_uses (ref, dkey, runs, first_run, last_run)
    SELECT image_ref, ifnull(image_digest, ''), count(*), min(id), max(id)
    FROM runs WHERE image_ref IS NOT NULL GROUP BY image_ref, ifnull(image_digest, '');
CREATE TRIGGER image_uses_insert AFTER INSERT ON runs WHEN NEW.image_ref IS NOT NULL
BEGIN
    INSERT INTO image_uses (ref, dkey, runs, first_run, last_run)
    VALUES (NEW.image_ref, ifnull(NEW.image_digest, ''), 1, NEW.id, NEW.id)
    ON CONFLICT (ref, dkey) DO UPDATE SET
        runs = runs + 1,
        first_run = min(first_run, excluded.first_run),
        last_run = max(last_run, excluded.last_run);
END;
CREATE TRIGGER image_uses_delete AFTER DELETE ON runs WHEN OLD.image_ref IS NOT NULL
BEGIN
    UPDATE image_uses SET
        runs = runs - 1,
        first_run = CASE WHEN first_run = OLD.id THEN ifnull((SELECT min(id) FROM runs
            WHERE image_ref = OLD.image_ref AND image_digest IS OLD.image_digest), first_run)
            ELSE first_run END,
        last_run = CASE WHEN last_run = OLD.id THEN ifnull((SELECT max(id) FROM runs
            WHERE image_ref = OLD.image_ref AND image_digest IS OLD.image_digest), last_run)
            ELSE last_run END
    WHERE ref = OLD.image_ref AND dkey = ifnull(OLD.image_digest, '');
    DELETE FROM image_uses
    WHERE ref = OLD.image_ref AND dkey = ifnull(OLD.image_digest, '') AND runs <= 0;
END;
CREATE TRIGGER image_uses_update AFTER UPDATE OF image_ref, image_digest ON runs
BEGIN
    UPDATE image_uses SET
        runs = runs - 1,
        first_run = CASE WHEN first_run = OLD.id THEN ifnull((SELECT min(id) FROM runs
            WHERE image_ref = OLD.image_ref AND image_digest IS OLD.image_digest), first_run)
            ELSE first_run END,
        last_run = CASE WHEN last_run = OLD.id THEN ifnull((SELECT max(id) FROM runs
            WHERE image_ref = OLD.image_ref AND image_digest IS OLD.image_digest), last_run)
            ELSE last_run END
    WHERE ref = OLD.image_ref AND dkey = ifnull(OLD.image_digest, '');
    DELETE FROM image_uses
    WHERE ref = OLD.image_ref AND dkey = ifnull(OLD.image_digest, '') AND runs <= 0;
    INSERT INTO image_uses (ref, dkey, runs, first_run, last_run)
    SELECT NEW.image_ref, ifnull(NEW.image_digest, ''), 1, NEW.id, NEW.id WHERE NEW.image_ref IS NOT NULL
    ON CONFLICT (ref, dkey) DO UPDATE SET
        runs = runs + 1,
        first_run = min(first_run, excluded.first_run),
        last_run = max(last_run, excluded.last_run);
END;
