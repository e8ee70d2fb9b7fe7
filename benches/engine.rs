//! Criterion benches over the engine kernels, runnable without PostgreSQL:
//!   cargo bench --no-default-features --bench engine
use criterion::{black_box, criterion_group, criterion_main, Criterion};

use pg_recsys::engine::interactions::Interactions;
use pg_recsys::engine::model::{Request, Spec};
use pg_recsys::engine::synthetic::{generate, SyntheticParams};
use pg_recsys::engine::neural::DeviceChoice;
use pg_recsys::engine::{linalg, similarity, topk, NoProgress};

fn data(users: i64, items: i64, interactions: i64) -> Interactions {
    let rows = generate(&SyntheticParams { users, items, interactions, seed: 42 }).unwrap();
    let u: Vec<i64> = rows.iter().map(|r| r.user_id).collect();
    let i: Vec<i64> = rows.iter().map(|r| r.item_id).collect();
    Interactions::from_triplets(&u, &i, &vec![1.0; u.len()]).unwrap()
}

fn kernels(c: &mut Criterion) {
    let a: Vec<f64> = (0..256).map(|x| (x as f64).sin()).collect();
    let b: Vec<f64> = (0..256).map(|x| (x as f64).cos()).collect();
    c.bench_function("cosine_256", |bench| bench.iter(|| similarity::cosine(black_box(&a), black_box(&b))));
    c.bench_function("pearson_256", |bench| bench.iter(|| similarity::pearson(black_box(&a), black_box(&b))));

    let scores: Vec<(u32, f32)> = (0..27_000u32).map(|i| (i, ((i * 7919) % 10_007) as f32)).collect();
    c.bench_function("top10_of_27k", |bench| bench.iter(|| topk::top_k(black_box(scores.iter().copied()), 10)));

    // ML-100K-shaped: 943 users, 1682 items, 100k interactions.
    let d = data(943, 1682, 100_000);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let (cols, _) = d.matrix.row(0);
    let history: Vec<(i64, f32)> = cols.iter().map(|&i| (d.item_ids[i as usize], 1.0)).collect();
    // Fit (ALS: 5 sweeps; EASE: Gram matrix + inverse; NCF: one epoch) and serve (the user
    // above, a new user to each model: fold-in for ALS) for each algorithm on the same data.
    for (alg, params) in [
        ("item_knn", serde_json::json!({"k": 100})),
        ("als", serde_json::json!({"factors": 64, "iterations": 5})),
        ("ease", serde_json::json!({})),
        ("ncf", serde_json::json!({"epochs": 1})),
    ] {
        let (spec, _) = Spec::parse(alg, &params).unwrap();
        let mut group = c.benchmark_group(format!("{alg}_ml100k_shape"));
        group.sample_size(10);
        group.bench_function("fit_2_threads", |bench| bench.iter(|| spec.fit(&d, DeviceChoice::Cpu, &pool, &mut NoProgress).unwrap()));
        let model = spec.fit(&d, DeviceChoice::Cpu, &pool, &mut NoProgress).unwrap();
        group.bench_function("recommend_10", |bench| {
            bench.iter(|| model.recommend(&Request { user_id: None, history: &history, n: 10, exclude_seen: true, candidates: None, items: &[], diversity: 0.0 }).unwrap())
        });
        group.finish();
    }

    // Scoring every item against one user vector: 27k items × 64 factors (the 20M-shaped ALS).
    let m: Vec<f32> = (0..27_000 * 64).map(|x| ((x % 97) as f32 - 48.0) / 97.0).collect();
    let v: Vec<f32> = (0..64).map(|x| (x as f32).sin()).collect();
    let mut out = vec![0f32; 27_000];
    c.bench_function("matvec_27k_x_64", |bench| bench.iter(|| linalg::matvec(black_box(&m), 64, black_box(&v), &mut out)));
}

criterion_group!(benches, kernels);
criterion_main!(benches);
