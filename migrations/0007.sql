-- Metrics a job reported (REPRO_METRICS lines, --metrics files). One summary row per run and
-- key (what `ls --sort/--where metric:KEY` reads, through the (key, stat) indexes), and the
-- points of each series clustered by (series, seq) so a run's history is one range scan and a
-- million points append in order. SQLite stores NaN as NULL: a NULL value is NaN, and a NULL
-- min/max means every value was NaN. Times are seconds since the Unix epoch.
CREATE TABLE IF NOT EXISTS run_metrics (
    series    INTEGER PRIMARY KEY,
    run_id    TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    key       TEXT NOT NULL,
    last      REAL,                                     -- value at the highest step (else the last reported)
    min       REAL,
    max       REAL,
    count     INTEGER NOT NULL,
    last_step INTEGER,
    UNIQUE (run_id, key)
);
CREATE INDEX IF NOT EXISTS run_metrics_key_last ON run_metrics (key, last, run_id);
CREATE INDEX IF NOT EXISTS run_metrics_key_min ON run_metrics (key, min, run_id);
CREATE INDEX IF NOT EXISTS run_metrics_key_max ON run_metrics (key, max, run_id);

CREATE TABLE IF NOT EXISTS metric_points (
    series INTEGER NOT NULL REFERENCES run_metrics (series) ON DELETE CASCADE,
    seq    INTEGER NOT NULL,                            -- order reported, from 0
    step   INTEGER,
    value  REAL,                                        -- NULL: NaN
    time   REAL,
    PRIMARY KEY (series, seq)
) WITHOUT ROWID;
