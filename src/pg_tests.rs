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
        Spi::run("INSERT INTO clicks SELECT 99999, item_id FROM recsys.recommend(99999, 3, 'm')").unwrap();
        let after = top("SELECT item_id FROM recsys.recommend(99999, 10, 'm')");
        let cold = top("SELECT item_id FROM recsys.recommend(123456, 10, 'm')");
        assert_ne!(after, cold, "a user with history must not get the cold-start list");
        let seen = top("SELECT item_id FROM clicks WHERE user_id = 99999");
        assert!(after.iter().all(|i| !seen.contains(i)));
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
