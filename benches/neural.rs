//! The neural models' training without PostgreSQL, for timing them (`make bench`'s PyTorch
//! comparison) and for the GPU check (`benches/gpu.sh`): trains ncf, sequential and two_tower on
//! ML-100K with the engine on each device asked for, scores NDCG@10 on a held-out split with the
//! engine's evaluator, and prints one JSON line per (model, device) with the epoch times.
//!
//!   cargo run --release --no-default-features [--features cuda] --example neural -- \
//!     --shared ../shared [--models ncf,sequential,two_tower] [--devices cpu,cuda] [--epochs N]
//!
//! Data, as `make bench` uses it: ncf and two_tower train on `eval/splits/ml100k_implicit_all_train.csv`
//! and are scored on its test split (two_tower with each item's title and genre names from
//! `data/ml-100k/u.item` as its text); sequential trains on ML-100K `u.data` split per user by
//! time (the latest 20 % of each user's rows are test, `recsys.split(method => 'temporal')`).

use std::collections::BTreeMap;
use std::time::Instant;

use pg_recsys::engine::interactions::Interactions;
use pg_recsys::engine::metrics::evaluate_top_n;
use pg_recsys::engine::model::Spec;
use pg_recsys::engine::neural::{device_name, DeviceChoice};
use pg_recsys::engine::split::{split, Method, Row};
use pg_recsys::engine::{NoProgress, Progress, Result};

/// Records when each epoch ends.
struct Epochs {
    start: Instant,
    ends: Vec<f64>,
    losses: Vec<f64>,
}

impl Progress for Epochs {
    fn step(&mut self, _: usize, _: usize) -> Result<()> {
        Ok(())
    }

    fn epoch(&mut self, _: &str, _: usize, _: usize, _: &str, value: f64) -> Result<()> {
        self.ends.push(self.start.elapsed().as_secs_f64());
        self.losses.push(value);
        Ok(())
    }
}

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter().position(|a| a == name).and_then(|k| args.get(k + 1)).cloned().unwrap_or_else(|| default.to_string())
}

/// (user, item) pairs of a split CSV with a header `user,item,...`.
fn pairs(path: &str) -> Vec<(i64, i64)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines().skip(1).filter(|l| !l.is_empty()).map(|l| {
        let mut f = l.split(',');
        (f.next().unwrap().parse().unwrap(), f.next().unwrap().parse().unwrap())
    }).collect()
}

fn interactions(rows: &[(i64, i64, Option<f64>)]) -> Interactions {
    let (u, i, t): (Vec<i64>, Vec<i64>, Vec<Option<f64>>) =
        rows.iter().fold((vec![], vec![], vec![]), |(mut u, mut i, mut t), r| {
            u.push(r.0);
            i.push(r.1);
            t.push(r.2);
            (u, i, t)
        });
    if t.iter().all(Option::is_none) {
        Interactions::from_triplets(&u, &i, &vec![1.0; u.len()]).unwrap()
    } else {
        Interactions::with_times(&u, &i, &vec![1.0; u.len()], &t).unwrap()
    }
}

fn test_lists(rows: &[(i64, i64)]) -> Vec<(i64, Vec<i64>)> {
    let mut by: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    rows.iter().for_each(|&(u, i)| by.entry(u).or_default().push(i));
    by.into_iter().collect()
}

/// ML-100K item texts: title and genre names, as `make bench` builds its items table.
fn item_texts(shared: &str) -> Vec<(i64, String)> {
    let latin1 = |path: String| std::fs::read(&path).map(|b| b.iter().map(|&c| c as char).collect::<String>()).unwrap_or_else(|e| panic!("{path}: {e}"));
    let genres: Vec<String> = latin1(format!("{shared}/data/ml-100k/u.genre")).lines().filter(|l| !l.trim().is_empty()).map(|l| l.split('|').next().unwrap().to_string()).collect();
    latin1(format!("{shared}/data/ml-100k/u.item"))
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            let g: Vec<&str> = genres.iter().zip(&f[5..24]).filter(|(_, flag)| **flag == "1").map(|(g, _)| g.as_str()).collect();
            (f[0].parse().unwrap(), format!("{} {}", f[1], g.join(" ")))
        })
        .collect()
}

fn main() {
    // As the extension's _PG_init does: the allocator's settings, Candle's CPU threads inside the
    // training's pool.
    pg_recsys::engine::memory::settle_allocator();
    pg_recsys::engine::neural::settle_candle_threads();
    let args: Vec<String> = std::env::args().collect();
    let shared = arg(&args, "--shared", "../shared");
    let models = arg(&args, "--models", "ncf,sequential,two_tower");
    let devices = arg(&args, "--devices", "cpu");
    let epochs = arg(&args, "--epochs", "");
    let threads: usize = arg(&args, "--threads", "2").parse().unwrap();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();

    let splits = format!("{shared}/eval/splits/ml100k_implicit_all");
    let all_train: Vec<(i64, i64, Option<f64>)> = pairs(&format!("{splits}_train.csv")).into_iter().map(|(u, i)| (u, i, None)).collect();
    let all_test = test_lists(&pairs(&format!("{splits}_test.csv")));
    // u.data: user item rating time, tab-separated; split per user by time.
    let udata = std::fs::read_to_string(format!("{shared}/data/ml-100k/u.data")).unwrap();
    let rows: Vec<Row> = udata
        .lines()
        .enumerate()
        .map(|(k, l)| {
            let f: Vec<&str> = l.split('\t').collect();
            Row { key: k as u64, user: f[0].parse().unwrap(), item: f[1].parse().unwrap(), time: Some(f[3].parse().unwrap()) }
        })
        .collect();
    let held = split(&rows, Method::Temporal, 0.2, 42).unwrap();
    let seq_train: Vec<(i64, i64, Option<f64>)> = rows.iter().zip(&held).filter(|(_, t)| !**t).map(|(r, _)| (r.user, r.item, r.time)).collect();
    let seq_test = test_lists(&rows.iter().zip(&held).filter(|(_, t)| **t).map(|(r, _)| (r.user, r.item)).collect::<Vec<_>>());
    let texts = item_texts(&shared);
    // The same data for PyTorch's twins (benches/torch_epoch.py): the temporal split's training
    // rows (user,item,time) and the item texts (item,text), CSV without a header.
    let write = |path: String, lines: Vec<String>| {
        if !path.is_empty() {
            std::fs::write(&path, lines.join("\n") + "\n").unwrap_or_else(|e| panic!("{path}: {e}"));
        }
    };
    write(arg(&args, "--write-seq-train", ""), seq_train.iter().map(|(u, i, t)| format!("{u},{i},{}", t.unwrap_or(0.0))).collect());
    let quoted = |t: &str| format!("\"{}\"", t.replace('"', "\"\""));
    write(arg(&args, "--write-items", ""), texts.iter().map(|(i, t)| format!("{i},{}", quoted(t))).collect());
    if args.iter().any(|a| a == "--only-write") {
        return;
    }

    for model in models.split(',') {
        let (train_rows, test, items) = match model {
            "sequential" => (&seq_train, &seq_test, &[][..]),
            "two_tower" => (&all_train, &all_test, &texts[..]),
            _ => (&all_train, &all_test, &[][..]),
        };
        let mut data = interactions(train_rows);
        if model == "two_tower" {
            let by_id: BTreeMap<i64, &String> = texts.iter().map(|(i, t)| (*i, t)).collect();
            data.item_text = Some(data.item_ids.iter().map(|i| by_id.get(i).map(|t| t.to_string()).unwrap_or_default()).collect());
        }
        let params = if epochs.is_empty() { serde_json::json!({}) } else { serde_json::json!({ "epochs": epochs.parse::<i64>().unwrap() }) };
        let (spec, _) = Spec::parse(model, &params).unwrap();
        for device in devices.split(',') {
            let choice = DeviceChoice::parse(device).unwrap();
            let dev = match choice.device() {
                Ok(d) => d,
                Err(e) => {
                    println!("{}", serde_json::json!({ "model": model, "device": device, "error": e.message }));
                    continue;
                }
            };
            let mut progress = Epochs { start: Instant::now(), ends: vec![], losses: vec![] };
            let fitted = spec.fit(&data, choice, &pool, &mut progress).unwrap();
            let fit_s = progress.start.elapsed().as_secs_f64();
            let epoch_s: Vec<f64> = progress.ends.iter().scan(0.0, |last, &e| {
                let d = e - *last;
                *last = e;
                Some(d)
            }).collect();
            let top = evaluate_top_n(&fitted, &data, test, items, 10, &pool, &mut NoProgress).unwrap();
            // The first epoch includes start-up (CUDA context, kernel loading): the steady epoch is
            // the median of the rest.
            let mut rest: Vec<f64> = epoch_s.iter().skip(1).copied().collect();
            rest.sort_by(f64::total_cmp);
            let steady = match rest.len() {
                0 => epoch_s.first().copied().unwrap_or(0.0),
                n if n % 2 == 0 => (rest[n / 2 - 1] + rest[n / 2]) / 2.0,
                n => rest[n / 2],
            };
            println!(
                "{}",
                serde_json::json!({
                    "model": model, "device": device, "ran_on": device_name(&dev), "epochs": epoch_s.len(),
                    "fit_s": fit_s, "epoch_s": epoch_s, "steady_epoch_s": steady,
                    "last_loss": progress.losses.last(), "ndcg10": top.ndcg, "users": top.users,
                })
            );
        }
    }
}
