use super::*;

fn kv(p: &Parsed) -> Vec<(String, Option<i64>, f64)> {
    p.points
        .iter()
        .map(|p| (p.key.to_string(), p.step, p.value))
        .collect()
}

fn same(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b
}

#[test]
fn jsonl_steps_metrics_and_time() {
    let text = b"{\"step\": 10, \"loss\": 0.31, \"acc\": 0.88}\n\n{\"step\": 20, \"loss\": 0.2, \"ts\": 1700000000.5}\r\n{\"loss\": 0.1, \"ts\": \"2026-01-01T00:00:00Z\"}\n";
    let p = parse_jsonl(text, "m.jsonl");
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    assert_eq!(
        kv(&p),
        vec![
            ("loss".into(), Some(10), 0.31),
            ("acc".into(), Some(10), 0.88),
            ("loss".into(), Some(20), 0.2),
            ("loss".into(), None, 0.1),
        ]
    );
    assert_eq!(p.points[0].time, None);
    assert_eq!(p.points[2].time, Some(1_700_000_000.5));
    assert_eq!(p.points[3].time, Some(1_767_225_600.0));
}

#[test]
fn jsonl_non_numeric_keys_one_warning_and_malformed_lines_numbered() {
    let text = b"{\"step\": 1, \"loss\": 0.5, \"phase\": \"train\", \"ok\": true}\n\
                 not json\n\
                 [1, 2]\n\
                 {\"step\": 2, \"loss\": 0.4, \"phase\": \"val\", \"note\": null}\n\
                 {\"step\": 2.5, \"loss\": 9}\n\
                 {\"loss\": 0.3";
    let p = parse_jsonl(text, "m.jsonl");
    assert_eq!(
        kv(&p),
        vec![("loss".into(), Some(1), 0.5), ("loss".into(), Some(2), 0.4)]
    );
    let w = &p.warnings;
    assert_eq!(w.len(), 5, "{w:?}");
    assert!(w[0].starts_with("m.jsonl: line 2: not JSON"), "{w:?}");
    assert!(
        w[1].starts_with("m.jsonl: line 3: not a JSON object"),
        "{w:?}"
    );
    assert!(w[2].contains("line 5") && w[2].contains("step"), "{w:?}");
    assert!(w[3].starts_with("m.jsonl: line 6: not JSON"), "{w:?}");
    assert_eq!(
        w[4],
        "m.jsonl: ignored non-numeric values of keys: note, ok, phase (metrics must be numbers)"
    );
}

#[test]
fn jsonl_keeps_nan_and_infinities_as_python_writes_them() {
    // json.dumps({"a": float("nan"), "b": float("inf"), "c": -float("inf")}) and DVCLive's strings
    let text = b"{\"a\": NaN, \"b\": Infinity, \"c\": -Infinity, \"s\": \"NaN in a string\"}\n{\"a\": \"nan\", \"b\": \"inf\", \"c\": \"-inf\"}\n";
    let p = parse_jsonl(text, "m");
    let vals: Vec<f64> = p.points.iter().map(|p| p.value).collect();
    assert_eq!(p.points.len(), 6, "{:?}", p.points);
    for (got, want) in vals.iter().zip([
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ]) {
        assert!(same(*got, want), "{vals:?}");
    }
    assert_eq!(p.warnings.len(), 1);
    assert!(p.warnings[0].contains("key: s "), "{:?}", p.warnings);
}

#[test]
fn jsonl_nested_objects_flatten_with_dots() {
    let p = parse_jsonl(
        b"{\"step\": 3, \"val\": {\"acc\": 0.9, \"top\": {\"k5\": 0.99}}}\n",
        "m",
    );
    assert_eq!(
        kv(&p),
        vec![
            ("val.acc".into(), Some(3), 0.9),
            ("val.top.k5".into(), Some(3), 0.99)
        ]
    );
}

#[test]
fn jsonl_many_malformed_lines_are_capped() {
    let text = "x\n".repeat(25);
    let p = parse_jsonl(text.as_bytes(), "m");
    assert_eq!(p.warnings.len(), 11);
    assert_eq!(p.warnings[10], "m: 15 more malformed lines skipped");
}

#[test]
fn json_file_flattens_and_uses_top_level_step() {
    let p = parse_json(
        br#"{"step": 7, "val": {"acc": 0.9}, "loss": 0.1, "name": "x", "hist": [1, 2]}"#,
        "m.json",
    );
    assert_eq!(
        kv(&p),
        vec![
            ("val.acc".into(), Some(7), 0.9),
            ("loss".into(), Some(7), 0.1)
        ]
    );
    assert_eq!(
        p.warnings,
        vec!["m.json: ignored non-numeric values of keys: hist, name (metrics must be numbers)"]
    );
}

#[test]
fn json_file_malformed_or_not_an_object_warns() {
    let p = parse_json(b"{\"acc\": ", "m.json");
    assert!(p.points.is_empty());
    assert!(
        p.warnings[0].starts_with("m.json: not valid JSON"),
        "{:?}",
        p.warnings
    );
    let p = parse_json(b"[1]", "m.json");
    assert!(p.warnings[0].contains("not a JSON object"));
    // JSON lines under a .json name
    let p = parse_json(
        b"{\"step\": 1, \"a\": 1}\n{\"step\": 2, \"a\": 2}\n",
        "m.json",
    );
    assert_eq!(kv(&p).len(), 2);
}

#[test]
fn yaml_file_flattens_and_keeps_non_finite() {
    let p = parse_yaml(
        b"val:\n  acc: 0.9\n  loss: .nan\nbest: .inf\nworst: -.inf\nlabel: hello\ncount: 3\n",
        "m.yaml",
    );
    let got = kv(&p);
    assert_eq!(got.len(), 5, "{got:?}");
    assert_eq!(got[0], ("val.acc".into(), None, 0.9));
    assert!(got[1].0 == "val.loss" && got[1].2.is_nan());
    assert_eq!(got[2], ("best".into(), None, f64::INFINITY));
    assert_eq!(got[3], ("worst".into(), None, f64::NEG_INFINITY));
    assert_eq!(got[4], ("count".into(), None, 3.0));
    assert_eq!(p.warnings.len(), 1);
    assert!(p.warnings[0].contains("key: label"));
    let p = parse_yaml(b"a: [1, 2\n", "m.yaml");
    assert!(p.warnings[0].starts_with("m.yaml: not valid YAML"));
}

#[test]
fn csv_with_step_column_is_a_history() {
    let text = b"epoch_name,step,loss,acc,timestamp\nfirst,0,1.0,0.5,1700000000000\nsecond,1,0.5,,1700000001000\nthird,2,nan,0.7,\n";
    let p = parse_delimited(text, b',', "m.csv");
    assert_eq!(
        kv(&p)
            .into_iter()
            .filter(|(_, _, v)| !v.is_nan())
            .collect::<Vec<_>>(),
        vec![
            ("loss".into(), Some(0), 1.0),
            ("acc".into(), Some(0), 0.5),
            ("loss".into(), Some(1), 0.5),
            ("acc".into(), Some(2), 0.7),
        ]
    );
    assert!(p
        .points
        .iter()
        .any(|p| p.value.is_nan() && p.step == Some(2)));
    // DVCLive-style millisecond timestamps become seconds.
    assert_eq!(p.points[0].time, Some(1_700_000_000.0));
    assert_eq!(p.points[2].time, Some(1_700_000_001.0));
    assert_eq!(
        p.warnings,
        vec!["m.csv: ignored non-numeric values of key: epoch_name (metrics must be numbers)"]
    );
}

#[test]
fn csv_without_step_takes_the_last_row_and_tsv_works() {
    let p = parse_delimited(b"loss,acc\n1,0.1\n0.5,0.2\n0.25,0.3\n", b',', "m.csv");
    assert_eq!(
        kv(&p),
        vec![("loss".into(), None, 0.25), ("acc".into(), None, 0.3)]
    );
    let p = parse_delimited(b"step\tacc\n0\t0.5\n1\t0.6\n", b'\t', "m.tsv");
    assert_eq!(
        kv(&p),
        vec![("acc".into(), Some(0), 0.5), ("acc".into(), Some(1), 0.6)]
    );
}

#[test]
fn csv_ragged_rows_and_bad_steps_warn_with_line_numbers() {
    let p = parse_delimited(b"step,loss\n0,1\n1,2,3\nx,4\n3,0.5\n", b',', "m.csv");
    assert_eq!(
        kv(&p),
        vec![("loss".into(), Some(0), 1.0), ("loss".into(), Some(3), 0.5)]
    );
    assert_eq!(p.warnings.len(), 2, "{:?}", p.warnings);
    assert!(
        p.warnings[0].starts_with("m.csv: line 3: 3 fields"),
        "{:?}",
        p.warnings
    );
    assert!(
        p.warnings[1].starts_with("m.csv: line 4: step \"x\""),
        "{:?}",
        p.warnings
    );
    let p = parse_delimited(b"", b',', "e.csv");
    assert!(p.warnings[0].contains("empty"));
}

#[test]
fn read_path_warns_for_missing_and_unknown_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = read_path(&dir.path().join("nope.json"));
    assert!(p.points.is_empty());
    assert!(p.warnings[0].contains("cannot read"), "{:?}", p.warnings);
    let p = read_path(&dir.path().join("nope.bin"));
    assert!(p.warnings[0].contains("no such file"), "{:?}", p.warnings);
    std::fs::write(dir.path().join("m.txt"), "a=1").unwrap();
    let p = read_path(&dir.path().join("m.txt"));
    assert!(
        p.warnings[0].contains("unknown metrics format"),
        "{:?}",
        p.warnings
    );
    let p = read_path(dir.path());
    assert!(
        p.warnings[0].contains("not a DVCLive directory"),
        "{:?}",
        p.warnings
    );
}

#[test]
fn dvclive_directory_as_dvclive_writes_it() {
    // Shape copied from dvclive 3.49 output (`Live().log_metric("train/loss", …)`, plot=False for `final`).
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("plots/metrics/train")).unwrap();
    std::fs::write(
        d.join("metrics.json"),
        "{\n    \"train\": {\n        \"loss\": 0.25\n    },\n    \"acc\": 0.7,\n    \"nanm\": \"nan\",\n    \"step\": 2,\n    \"final\": 7\n}",
    )
    .unwrap();
    std::fs::write(
        d.join("plots/metrics/acc.tsv"),
        "step\tacc\n0\t0.5\n1\t0.6\n2\t0.7\n",
    )
    .unwrap();
    std::fs::write(d.join("plots/metrics/nanm.tsv"), "step\tnanm\n0\tnan\n").unwrap();
    std::fs::write(
        d.join("plots/metrics/train/loss.tsv"),
        "timestamp\tstep\tloss\n1700000000000\t0\t1.0\n1700000001000\t1\t0.5\n1700000002000\t2\t0.25\n",
    )
    .unwrap();
    let p = read_dvclive(d);
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let got = kv(&p);
    let keys: Vec<&str> = got.iter().map(|(k, _, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        vec![
            "acc",
            "acc",
            "acc",
            "nanm",
            "train/loss",
            "train/loss",
            "train/loss",
            "final"
        ]
    );
    assert_eq!(got[7], ("final".into(), Some(2), 7.0));
    assert!(got[3].2.is_nan());
    assert_eq!(p.points[4].time, Some(1_700_000_000.0));
}

#[test]
fn number_helpers() {
    assert!(non_finite("NaN").unwrap().is_nan());
    assert_eq!(non_finite("-Infinity"), Some(f64::NEG_INFINITY));
    assert_eq!(non_finite("+inf"), Some(f64::INFINITY));
    assert_eq!(non_finite("nanny"), None);
    assert_eq!(parse_number(" 1e-3 "), Some(0.001));
    assert_eq!(parse_number("1,5"), None);
    assert_eq!(as_step(3.0), Some(3));
    assert_eq!(as_step(3.5), None);
    assert_eq!(as_time_str("2026-01-01T00:00:00.5Z"), Some(1_767_225_600.5));
}

/// A large file is parsed by several threads; the points, their order and every warning (line
/// numbers included) are those of one thread, wherever the runs of lines are cut.
#[test]
fn jsonl_parsed_in_parallel_is_the_same_as_in_one_thread() {
    let mut text = String::new();
    for i in 0..3_000 {
        match i % 250 {
            7 => text.push_str("not json\n"),
            8 => text.push('\n'),
            9 => text.push_str(&format!(
                "{{\"step\": {i}, \"loss\": NaN, \"tag\": \"x{}\"}}\r\n",
                i % 3
            )),
            10 => text.push_str(&format!("{{\"step\": {i}.5, \"loss\": 1}}\n")),
            _ => text.push_str(&format!(
                "{{\"step\": {i}, \"loss\": {}, \"val\": {{\"acc\": {}}}, \"ts\": {}}}\n",
                1.0 / (1 + i) as f64,
                i as f64 / 3e3,
                1.7e9 + i as f64
            )),
        }
    }
    text.push_str("{\"step\": 3000, \"loss\": 0.5}"); // no final newline
    let flat = |p: &Parsed| -> Vec<(String, Option<i64>, u64, Option<u64>)> {
        p.points
            .iter()
            .map(|q| {
                (
                    q.key.to_string(),
                    q.step,
                    q.value.to_bits(),
                    q.time.map(f64::to_bits),
                )
            })
            .collect()
    };
    let one = jsonl::parse_jsonl_threads(text.as_bytes(), "m.jsonl", 1);
    assert_eq!(one.points.len(), 2 * 2_952 + 12 + 1);
    assert_eq!(one.warnings.len(), 10 + 1 + 1, "{:?}", one.warnings);
    assert_eq!(
        one.warnings[0],
        "m.jsonl: line 8: not JSON (expected ident at line 1 column 2); line skipped"
    );
    assert_eq!(one.warnings[10], "m.jsonl: 14 more malformed lines skipped");
    for threads in [2, 3, 7, 64] {
        let many = jsonl::parse_jsonl_threads(text.as_bytes(), "m.jsonl", threads);
        assert_eq!(flat(&many), flat(&one), "{threads} threads");
        assert_eq!(many.warnings, one.warnings, "{threads} threads");
    }
}

/// Read and parsed a window at a time, a file gives the points (in order) and the warnings
/// (line numbers included) of the whole file parsed at once, wherever the windows end: inside
/// a line, on a newline, with a line longer than a window, or with no final newline.
#[test]
fn jsonl_streamed_in_windows_is_the_same_as_parsed_whole() {
    let mut text = String::new();
    for i in 0..400 {
        match i % 37 {
            3 => text.push_str("not json\n"),
            4 => text.push_str("\n  \n"),
            5 => text.push_str(&format!("{{\"step\": {i}.5, \"loss\": 1}}\r\n")),
            6 => text.push_str(&format!(
                "{{\"step\": {i}, \"loss\": NaN, \"tag\": \"x\", \"big\": 1e400, \"ts\": \"soon\"}}\n"
            )),
            7 => text.push_str(&format!(
                "{{\"step\": {i}, \"long\": {{{}}}}}\n",
                (0..40)
                    .map(|k| format!("\"k{k}\": {k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            _ => text.push_str(&format!(
                "{{\"step\": {i}, \"loss\": {}, \"val\": {{\"acc\": {}}}, \"ts\": {}}}\n",
                1.0 / (1 + i) as f64,
                i as f64 / 400.0,
                1.7e9 + i as f64
            )),
        }
    }
    let flat = |points: &[MetricPoint]| -> Vec<(String, Option<i64>, u64, Option<u64>)> {
        points
            .iter()
            .map(|q| {
                (
                    q.key.to_string(),
                    q.step,
                    q.value.to_bits(),
                    q.time.map(f64::to_bits),
                )
            })
            .collect()
    };
    for tail in ["", "{\"step\": 400, \"loss\": 0.5}"] {
        let text = format!("{text}{tail}");
        let whole = jsonl::parse_jsonl_threads(text.as_bytes(), "m.jsonl", 1);
        assert!(whole.warnings.len() >= 12, "{:?}", whole.warnings);
        assert!(whole.points.len() > 1_000);
        for window in [1, 10, 97, 300, 4096, 1 << 20] {
            for threads in [1, 3] {
                // The file arrives in reads of odd sizes, never more than asked for.
                let mut at = 0;
                let mut reads = 0usize;
                let fill = |buf: &mut Vec<u8>, max: usize| -> Result<usize, ()> {
                    reads += 1;
                    let n = max.min(text.len() - at).min(1 + reads % 53);
                    buf.extend_from_slice(&text.as_bytes()[at..at + n]);
                    at += n;
                    Ok(n)
                };
                let mut points = Vec::new();
                let mut calls = 0;
                let warnings =
                    jsonl::parse_jsonl_windows(fill, "m.jsonl", window, threads, None, &mut |p| {
                        calls += 1;
                        points.extend(p)
                    })
                    .unwrap();
                let what = format!("window {window}, {threads} threads, tail {tail:?}");
                assert_eq!(flat(&points), flat(&whole.points), "{what}");
                assert_eq!(warnings, whole.warnings, "{what}");
                if window < 4096 {
                    assert!(calls > 10, "{what}: {calls} windows");
                }
            }
        }
    }
}

/// A read that fails ends the streamed parse with its error.
#[test]
fn jsonl_streamed_stops_at_a_read_error() {
    let mut n = 0;
    let fill = |buf: &mut Vec<u8>, _max: usize| -> Result<usize, &'static str> {
        n += 1;
        if n > 2 {
            return Err("gone");
        }
        buf.extend_from_slice(b"{\"step\": 1, \"a\": 2}\n");
        Ok(20)
    };
    let mut got = 0;
    let r = jsonl::parse_jsonl_windows(fill, "m.jsonl", 25, 1, None, &mut |p| got += p.len());
    assert_eq!(r, Err("gone"));
    assert_eq!(got, 2, "the window read before the failed read was parsed");
}

/// `stream_path` gives what `read_path` gives, JSON-lines file or not, and says when a file was
/// refused (nothing of it kept).
#[test]
fn stream_path_is_read_path_a_window_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("m.jsonl");
    let lines: String = (0..200)
        .map(|i| format!("{{\"step\": {i}, \"loss\": {i}.5}}\n"))
        .chain(["bad\n".to_string()])
        .collect();
    std::fs::write(&jsonl, lines).unwrap();
    let json = dir.path().join("m.json");
    std::fs::write(&json, "{\"val\": {\"loss\": 0.25}, \"x\": \"y\"}").unwrap();
    let missing = dir.path().join("missing.jsonl");
    let fifo = dir.path().join("f.jsonl");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    for path in [&jsonl, &json, &missing, &fifo] {
        let whole = read_path(path);
        let mut points = Vec::new();
        let streamed = stream_path(path, 64, &mut |p| points.extend(p));
        assert_eq!(
            kv(&Parsed {
                points,
                warnings: vec![]
            }),
            kv(&whole),
            "{path:?}"
        );
        assert_eq!(streamed.warnings, whole.warnings, "{path:?}");
        assert_eq!(
            streamed.complete,
            path != &missing && path != &fifo,
            "{path:?}"
        );
    }
}

/// A line without `ts` gets the time the live reader noted for its byte offset, whatever the
/// window and thread count; a line with `ts` keeps its own; a line never seen gets none.
#[test]
fn lines_without_ts_get_their_stamp_for_any_window_and_threads() {
    let mut text = String::new();
    let mut stamps = super::live::Stamps::default();
    for i in 0..200 {
        if i % 7 == 3 {
            text.push_str(&format!("{{\"loss\": {i}, \"ts\": 5}}\n"));
        } else {
            text.push_str(&format!("{{\"loss\": {i}}}\n"));
        }
        if i % 10 == 9 && i < 190 {
            stamps.push(text.len() as u64, 1000.0 + i as f64);
        }
    }
    let want = |i: usize| -> Option<f64> {
        if i % 7 == 3 {
            Some(5.0)
        } else if i < 190 {
            Some(1000.0 + (i / 10 * 10 + 9) as f64)
        } else {
            None
        }
    };
    for window in [1, 13, 300, 1 << 20] {
        for threads in [1, 3] {
            let mut at = 0;
            let fill = |buf: &mut Vec<u8>, max: usize| -> Result<usize, ()> {
                let n = max.min(text.len() - at).min(37);
                buf.extend_from_slice(&text.as_bytes()[at..at + n]);
                at += n;
                Ok(n)
            };
            let mut points = Vec::new();
            jsonl::parse_jsonl_windows(fill, "m", window, threads, Some(&stamps), &mut |p| {
                points.extend(p)
            })
            .unwrap();
            assert_eq!(points.len(), 200);
            for (i, p) in points.iter().enumerate() {
                assert_eq!(
                    p.time,
                    want(i),
                    "line {i}, window {window}, {threads} threads"
                );
            }
        }
    }
}
