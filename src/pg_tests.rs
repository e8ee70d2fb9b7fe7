//! `#[pg_test]`s: glue behaviour that needs a backend (SPI, SQLSTATEs, GUCs, the model cache).

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn setup_table() {
        Spi::run(
            "CREATE TABLE clicks AS SELECT user_id, item_id FROM recsys.synthetic_interactions(60, 40, 900, 7);
             CREATE INDEX ON clicks (user_id);",
        )
        .unwrap();
    }

    fn top(sql: &str) -> Vec<i64> {
        Spi::connect(|c| {
            c.select(sql, None, &[]).unwrap().map(|r| r.get::<i64>(1).unwrap().unwrap()).collect()
        })
    }

    #[pg_test]
    fn train_then_recommend_excludes_seen_and_is_ordered() {
        setup_table();
        let v = Spi::get_one::<i32>("SELECT version FROM recsys.train('m', 'clicks', 'item_knn', '{\"k\": 20}')").unwrap();
        assert_eq!(v, Some(1));
        let recs = top("SELECT item_id FROM recsys.recommend(1, 10, 'm')");
        assert_eq!(recs.len(), 10);
        let seen = top("SELECT item_id FROM clicks WHERE user_id = 1");
        assert!(recs.iter().all(|i| !seen.contains(i)));
        let ordered = Spi::get_one::<bool>(
            "SELECT bool_and(ok) FROM (SELECT lag(score) OVER (ORDER BY rank) >= score OR rank = 1 AS ok
               FROM recsys.recommend(1, 10, 'm')) s",
        )
        .unwrap();
        assert_eq!(ordered, Some(true));
    }

    #[pg_test]
    fn new_interaction_changes_answer_without_retraining() {
        setup_table();
        Spi::run("SELECT recsys.train('m', 'clicks', 'item_knn')").unwrap();
        // A brand-new user's one row, for the item with the most neighbours: item_knn's score of j
        // for the history {x} is exactly sim(x, j), so the answer must be x's neighbours, each
        // with its similarity — popularity (what an ignored history would give) scores counts.
        let x = Spi::get_one::<i64>(
            "SELECT n.item_id FROM recsys.item_neighbors n JOIN recsys.models m ON m.id = n.model_id AND m.name = 'm'
             GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1",
        )
        .unwrap()
        .unwrap();
        Spi::run(&format!("INSERT INTO clicks VALUES (99999, {x})")).unwrap();
        let mismatched = Spi::get_one::<i64>(&format!(
            "SELECT count(*) FROM recsys.recommend(99999, 5, 'm') r
               LEFT JOIN (SELECT n.neighbor_id, n.score FROM recsys.item_neighbors n JOIN recsys.models m
                            ON m.id = n.model_id AND m.name = 'm' WHERE n.item_id = {x}) nb ON nb.neighbor_id = r.item_id
              WHERE nb.score IS NULL OR abs(nb.score - r.score) > 1e-6"
        ))
        .unwrap();
        assert_eq!(mismatched, Some(0), "the answer must come from the new row's neighbours");
        assert_eq!(top("SELECT item_id FROM recsys.recommend(99999, 5, 'm')").len(), 5);
        let after = top("SELECT item_id FROM recsys.recommend(99999, 10, 'm')");
        assert!(!after.contains(&x), "the new row's item is seen");
    }

    #[pg_test]
    fn model_cache_is_bounded_in_bytes() {
        // EASE on 300 items stores a 300 × 300 float matrix and its neighbours: ~0.6 MB a model.
        Spi::run("CREATE TABLE wide AS SELECT user_id, item_id FROM recsys.synthetic_interactions(200, 300, 6000, 3)").unwrap();
        for name in ["e1", "e2", "e3"] {
            Spi::run(&format!("SELECT recsys.train('{name}', 'wide', 'ease', '{{\"lambda\": 10}}')")).unwrap();
        }
        let sizes: Vec<i64> = top("SELECT sum(length(b.data))::int8 FROM recsys.model_blobs b JOIN recsys.models m ON m.id = b.model_id GROUP BY m.name ORDER BY m.name");
        assert!(sizes.iter().all(|&s| s > 400_000 && s < 800_000), "{sizes:?}");
        let serve = |names: &[&str]| {
            for name in names {
                Spi::run(&format!("SELECT * FROM recsys.recommend(1, 3, '{name}')")).unwrap();
            }
        };
        // Start empty (earlier tests may have served models in this backend).
        Spi::run("SET recsys.model_cache_mb = 0").unwrap();
        serve(&["e1"]);
        assert_eq!(crate::sql::cache::usage(), (0, 0), "a budget of 0 keeps nothing");
        // 1 MB holds one of them: each new one evicts the one before (a count of 8 would keep all).
        Spi::run("SET recsys.model_cache_mb = 1").unwrap();
        serve(&["e1", "e2", "e3"]);
        assert_eq!(crate::sql::cache::usage(), (1, sizes[2] as usize), "1 MB, sizes {sizes:?}");
        // 2 MB holds all three.
        Spi::run("SET recsys.model_cache_mb = 2").unwrap();
        serve(&["e1", "e2"]);
        let (models, bytes) = crate::sql::cache::usage();
        assert_eq!((models, bytes as i64), (3, sizes.iter().sum::<i64>()), "2 MB, sizes {sizes:?}");
    }

    #[pg_test]
    fn default_model_guc_and_retrain_bumps_version() {
        setup_table();
        Spi::run("SELECT recsys.train('a', 'clicks', 'popularity')").unwrap();
        Spi::run("SELECT recsys.train('b', 'clicks', 'item_knn')").unwrap();
        Spi::run("SET recsys.default_model = 'a'").unwrap();
        let via_guc = top("SELECT item_id FROM recsys.recommend(5, 5)");
        let named = top("SELECT item_id FROM recsys.recommend(5, 5, 'a')");
        assert_eq!(via_guc, named);
        let v = Spi::get_one::<i32>("SELECT version FROM recsys.train('a', 'clicks', 'popularity')").unwrap();
        assert_eq!(v, Some(2));
        let deployed = Spi::get_one::<i64>("SELECT count(*) FROM recsys.models WHERE name = 'a' AND deployed").unwrap();
        assert_eq!(deployed, Some(1));
    }

    #[pg_test(error = "several models are deployed and none was named")]
    fn ambiguous_default_is_an_error() {
        setup_table();
        Spi::run("SELECT recsys.train('a', 'clicks', 'popularity')").unwrap();
        Spi::run("SELECT recsys.train('b', 'clicks', 'popularity')").unwrap();
        Spi::run("SELECT * FROM recsys.recommend(1, 5)").unwrap();
    }

    #[pg_test]
    fn cached_model_is_not_served_after_drop() {
        setup_table();
        Spi::run("SELECT recsys.train('m', 'clicks', 'popularity')").unwrap();
        assert_eq!(top("SELECT item_id FROM recsys.recommend(1, 3, 'm')").len(), 3);
        Spi::run("SELECT recsys.drop_model('m')").unwrap();
        let gone = PgTryBuilder::new(|| Spi::run("SELECT * FROM recsys.recommend(1, 3, 'm')").is_ok())
            .catch_others(|_| false)
            .execute();
        assert!(!gone);
    }
}
