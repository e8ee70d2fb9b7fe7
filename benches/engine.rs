//! Criterion benches over the engine kernels, runnable without PostgreSQL:
//!   cargo bench --no-default-features --bench engine
use criterion::{black_box, criterion_group, criterion_main, Criterion};

use pg_recsys::engine::interactions::Interactions;
use pg_recsys::engine::model::{Request, Spec};
use pg_recsys::engine::synthetic::{generate, SyntheticParams};
use pg_recsys::engine::{similarity, topk, NoProgress};

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
    let (spec, _) = Spec::parse("item_knn", &serde_json::json!({"k": 100})).unwrap();
    let mut group = c.benchmark_group("item_knn_ml100k_shape");
    group.sample_size(10);
    group.bench_function("fit_2_threads", |bench| bench.iter(|| spec.fit(&d, pg_recsys::engine::neural::DeviceChoice::Cpu, &pool, &mut NoProgress).unwrap()));
    group.finish();

    let model = spec.fit(&d, pg_recsys::engine::neural::DeviceChoice::Cpu, &pool, &mut NoProgress).unwrap();
    let (cols, _) = d.matrix.row(0);
    let history: Vec<(i64, f32)> = cols.iter().map(|&i| (d.item_ids[i as usize], 1.0)).collect();
    c.bench_function("item_knn_recommend_10", |bench| {
        bench.iter(|| model.recommend(&Request { user_id: None, history: &history, n: 10, exclude_seen: true, candidates: None, items: &[] }))
    });
}

criterion_group!(benches, kernels);
criterion_main!(benches);
