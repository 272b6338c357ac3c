//! Ingests a metrics file (or DVCLive directory) into an existing run, timing the parse and the
//! store write separately: the path the run wrapper takes when a run ends. Used by
//! `benches/metrics.sh`; also handy to attach metrics to a run by hand.
//!
//! Usage: cargo run --release --example metrics_ingest -- DB RUN_ID PATH [PATH…]

use std::path::Path;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: metrics_ingest DB RUN_ID PATH [PATH…]");
        std::process::exit(2);
    }
    let t0 = Instant::now();
    let mut parsed = repro::capture::metrics::Parsed::default();
    for p in &args[2..] {
        parsed.extend(repro::capture::metrics::read_path(Path::new(p)));
    }
    let t_parse = t0.elapsed();
    for w in &parsed.warnings {
        eprintln!("warning: {w}");
    }
    let mut store = match repro::store::Store::open(Path::new(&args[0])) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let id = match store.resolve_id(&args[1]) {
        Ok(id) => id,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let t1 = Instant::now();
    let written = match store.insert_metrics(&id, &parsed.points) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let t_store = t1.elapsed();
    drop(store);
    let total = t0.elapsed();
    println!(
        "{} points, {} keys: parse {:.3}s, store {:.3}s, total {:.3}s",
        written.points,
        written.keys,
        t_parse.as_secs_f64(),
        t_store.as_secs_f64(),
        total.as_secs_f64()
    );
}
