"""The bad-input calls of tests/client_badinput.sh, one SQL statement per line: every function
with NULL in each argument, NaN/±Inf, empty/mismatched/huge arrays, n out of range, unknown
models/users/items, wrong id types, odd sources (a view, a partitioned table, an empty table, one
user, one item, duplicate rows, negative ratings) and params JSON of wrong types or unknown keys.
Each must end in a result or a clean ERROR with a specific SQLSTATE."""

calls = []
add = calls.append

# recommend and friends: NULL in every argument, out-of-range n, unknown things, wrong id types.
rec_args = ["1", "10", "'m_knn'", "true", "NULL::bigint[]", "NULL::text", "NULL::regclass", "false"]
rec_names = ["user_id", "n", "model", "exclude_seen", "candidates", "filter", "items", "with_reasons"]
for model in ["m_knn", "m_als", "m_ease", "m_pop", "m_content", "m_ncf", "m_seq", "m_hybrid"]:
    for i, name in enumerate(rec_names):
        args = [a.replace("'m_knn'", f"'{model}'") for a in rec_args]
        args[i] = "NULL"
        if model == "m_content" and name != "items":
            args[6] = "'bi_items'"
        add(f"SELECT * FROM recsys.recommend({', '.join(f'{n} => {a}' for n, a in zip(rec_names, args))})")
    for n in ["0", "-1", "-2147483648", "2147483647"]:
        add(f"SELECT count(*) FROM recsys.recommend(1, {n}, '{model}')")
    add(f"SELECT count(*) FROM recsys.recommend(-9223372036854775808, 10, '{model}')")
    add(f"SELECT count(*) FROM recsys.recommend(9223372036854775807, 10, '{model}')")
    add(f"SELECT count(*) FROM recsys.recommend(1, 10, '{model}', candidates => '{{}}')")
    add(f"SELECT count(*) FROM recsys.recommend(1, 10, '{model}', candidates => ARRAY[NULL, 1, 2]::bigint[])")
    add(f"SELECT count(*) FROM recsys.recommend(1, 10, '{model}', candidates => ARRAY(SELECT generate_series(1, 200000)::bigint))")
    add(f"SELECT count(*) FROM recsys.recommend(1, 10, '{model}', candidates => ARRAY[-1, 99999999]::bigint[])")
    add(f"SELECT count(*) FROM recsys.predict(1, 99999999, '{model}')")
    add(f"SELECT count(*) FROM recsys.predict(NULL, 1, '{model}')")
    add(f"SELECT count(*) FROM recsys.predict(1, NULL, '{model}')")
    add(f"SELECT count(*) FROM recsys.explain(1, 2, '{model}')")
    add(f"SELECT count(*) FROM recsys.explain(NULL, 2, '{model}')")
    add(f"SELECT count(*) FROM recsys.explain(1, 2, '{model}', n => 0)")
    add(f"SELECT count(*) FROM recsys.explain(1, 2, '{model}', n => NULL)")
    add(f"SELECT count(*) FROM recsys.similar_items(1, 5, '{model}')")
    add(f"SELECT count(*) FROM recsys.similar_items(99999999, 5, '{model}')")
    add(f"SELECT count(*) FROM recsys.similar_items(1, 0, '{model}')")
    add(f"SELECT count(*) FROM recsys.similar_users(1, 5, '{model}')")
    add(f"SELECT count(*) FROM recsys.similar_users(1, -5, '{model}')")
    add(f"SELECT * FROM recsys.evaluate('{model}', 'bi_test', k => 0)")
for fn in ["recommend(%s, 10, 'm_knn')", "predict(%s, 1, 'm_knn')", "similar_items(%s, 5, 'm_knn')"]:
    for bad in ["'abc'", "1.5", "'1e3'", "true", "'{1}'::bigint[]", "''"]:
        add("SELECT * FROM recsys." + fn % bad)
for model in ["'nope'", "''", "NULL", "repeat('x', 10000)", "'m_knn; DROP TABLE bi'"]:
    add(f"SELECT * FROM recsys.recommend(1, 10, {model})")
    add(f"SELECT recsys.deploy({model}, 1)")
    add(f"SELECT recsys.drop_model({model})")
for v in ["0", "-1", "NULL", "2147483647"]:
    add(f"SELECT recsys.deploy('m_knn', {v})")
add("SELECT * FROM recsys.recommend(1, 10, 'm_knn', items => 'no_such_table')")
add("SELECT * FROM recsys.recommend(1, 10, 'm_knn', filter => 'item_id > 3')")
add("SELECT * FROM recsys.recommend(1, 10, 'm_content', filter => 'no_column > 3')")
add("SELECT * FROM recsys.recommend(1, 10, 'm_content', filter => '1')")
add("SELECT * FROM recsys.recommend(1, 10, 'm_content', filter => '')")
add("SELECT * FROM recsys.recommend(1, 10, 'm_content', filter => 'NULL')")
add("SELECT * FROM recsys.recommend(1, 10, 'm_content', filter => 'item_id = 1; SELECT 1')")
add("SELECT * FROM recsys.recommend(1, 10, 'm_content', filter => 'pg_sleep(0) IS NULL')")

# Similarity functions: NULLs, NaN/±Inf, empty, mismatched and huge arrays.
for fn, typ in [("cosine", "real"), ("cosine", "float8"), ("pearson", "real"), ("pearson", "float8")]:
    for a, b in [("NULL", "'{1,2}'"), ("'{1,2}'", "NULL"), ("'{}'", "'{}'"), ("'{1,2,3}'", "'{1,2}'"),
                 ("'{NaN,1}'", "'{1,1}'"), ("'{Infinity,1}'", "'{1,1}'"), ("'{-Infinity,1}'", "'{1,-Infinity}'"),
                 ("'{NULL,1}'", "'{1,1}'"), ("'{0,0}'", "'{0,0}'"), ("'{1}'", "'{1}'"),
                 ("array_fill(1, ARRAY[3000000])", "array_fill(2, ARRAY[3000000])"),
                 ("'{3.4e38,3.4e38}'", "'{3.4e38,3.4e38}'")]:
        add(f"SELECT recsys.{fn}({a}::{typ}[], {b}::{typ}[])")
for a, b in [("NULL", "'{1}'"), ("'{}'", "'{}'"), ("'{1,1,2}'", "'{2}'"), ("'{NULL}'", "'{NULL}'"),
             ("ARRAY(SELECT generate_series(1, 2000000)::bigint)", "ARRAY(SELECT generate_series(1000000, 3000000)::bigint)")]:
    add(f"SELECT recsys.jaccard({a}::bigint[], {b}::bigint[])")
add("SELECT recsys.cosine('{1,2}'::text[], '{1,2}'::text[])")
add("SELECT recsys.cosine('{{1,2},{3,4}}'::real[], '{{1,2},{3,4}}'::real[])")

# train: NULL in every argument, odd sources, wrong columns, params of the wrong types.
train_args = ["@T@", "'bi'", "'item_knn'", "'{}'", "'user_id'", "'item_id'", "NULL", "NULL", "NULL", "NULL"]
train_names = ["model", "source", "algorithm", "params", "user_column", "item_column", "rating_column",
               "time_column", "items", "item_text"]
for i in range(6):
    args = list(train_args)
    args[i] = "NULL"
    add(f"SELECT * FROM recsys.train({', '.join(f'{n} => {a}' for n, a in zip(train_names, args))})")
for src in ["bi_view", "bi_parted", "bi_empty", "bi_one_user", "bi_one_item", "bi_dupes", "bi_negative",
            "bi_nullids", "bi_text_ids", "bi_numeric_ids", "no_such_table", "pg_class"]:
    for alg in ["popularity", "item_knn", "user_knn", "als", "bpr", "ease", "svd", "ncf"]:
        add(f"SELECT * FROM recsys.train(@T@, '{src}', '{alg}')")
    # A train of an existing name that fails on its source adds no version.
    if src in ("bi_empty", "bi_text_ids", "bi_numeric_ids", "no_such_table", "pg_class"):
        add(f"SELECT * FROM recsys.train('m_knn', '{src}', 'item_knn')")
# Negative and zero weights where an algorithm reads them as confidences or ratings.
for alg in ["item_knn", "als", "bpr", "ease", "user_knn", "svd", "rp3beta", "slim"]:
    add(f"SELECT * FROM recsys.train(@T@, 'bi_negative', '{alg}', rating_column => 'rating')")
# Weightings, rp3beta and slim params, diversity, a filter's parameters, tune's searches.
for params in ['{"weighting": "nope"}', '{"weighting": null}', '{"weighting": "bm25", "bm25_k1": -1}', '{"weighting": "bm25", "bm25_b": 2}',
               '{"weighting": "log", "bm25_k1": 1}', '{"weighting": "tfidf"}', '{"weighting": "bm25"}']:
    add(f"SELECT * FROM recsys.train(@T@, 'bi', 'item_knn', '{params}', rating_column => 'rating')")
for alg, params in [("rp3beta", '{"alpha": -1}'), ("rp3beta", '{"beta": "NaN"}'), ("rp3beta", '{"k": 0}'), ("rp3beta", '{"normalize": 1}'),
                    ("slim", '{"alpha": 0}'), ("slim", '{"l1_ratio": -0.1}'), ("slim", '{"max_iter": 0}'), ("slim", '{"tol": 2}'),
                    ("biased_mf", '{"weighting": "log"}')]:
    add(f"SELECT * FROM recsys.train(@T@, 'bi', '{alg}', '{params}', rating_column => 'rating')")
for model in ["m_knn", "m_als", "m_ease", "m_pop", "m_ncf", "m_seq", "m_hybrid"]:
    for d in ["NULL", "-0.1", "1.0000001", "'NaN'", "'Infinity'", "0", "1", "0.5"]:
        add(f"SELECT count(*) FROM recsys.recommend(1, 10, '{model}', diversity => {d})")
    add(f"SELECT count(*) FROM recsys.recommend(1, 10 * 214748364, '{model}', diversity => 0.3)")
    add(f"SELECT count(*) FROM recsys.recommend(1, 1000, '{model}', diversity => 0.3)")
for f in ["item_id <> $1", "item_id <> $2", "$1 IS NULL", "item_id = $1::text::int"]:
    add(f"SELECT count(*) FROM recsys.recommend(1, 10, 'm_content', filter => '{f}')")
for args in ["'t_tune', 'bi', 'ease', '{\"lambda\": {\"min\": 1, \"max\": 10}}'",
             "'t_tune', 'bi', 'ease', '{\"lambda\": {\"min\": 1, \"max\": 10}}', search => 'random', trials => 2",
             "'t_tune', 'bi', 'ease', '{\"lambda\": {\"min\": \"a\", \"max\": 10}}', search => 'random'",
             "'t_tune', 'bi', 'ease', '{\"lambda\": {\"min\": 1e308, \"max\": 1e308}}', search => 'random', trials => 1",
             "'t_tune', 'bi', 'ease', '{}', search => NULL", "'t_tune', 'bi', 'ease', '{}', search => 'random', trials => -1",
             "'t_tune', 'bi', 'ease', '{}', search => 'halving', trials => 2147483647, time_budget => 0.5",
             "'t_tune', 'bi', 'ease', '{}', time_budget => 'NaN'", "'t_tune', 'bi', 'ease', '{}', time_budget => -1",
             "'t_tune', 'bi', 'auto', '{\"k\": [1]}'", "'t_tune', 'bi', 'auto', metric => 'rmse'",
             "'t_tune', 'bi', 'auto', trials => 1, time_budget => 0.01"]:
    add(f"SELECT count(*) FROM recsys.tune({args})")
for alg in ["biased_mf", "svdpp"]:
    for src in ["bi", "bi_negative", "bi_one_user"]:
        add(f"SELECT * FROM recsys.train(@T@, '{src}', '{alg}', '{{\"epochs\": 2}}', rating_column => 'rating')")
    add(f"SELECT * FROM recsys.train(@T@, 'bi', '{alg}', rating_column => 'ts')")
    add(f"SELECT * FROM recsys.train(@T@, 'bi', '{alg}')")
for params in ['{"k": "ten"}', '{"k": -1}', '{"k": 0}', '{"k": 1e12}', '{"k": 2.5}', '{"k": null}', '[]', '"text"', '1',
               '{"nope": 1}', '{"k": [1]}', '{"k": {"a": 1}}', '{"similarity": "nope"}', '{"similarity": 3}',
               '{"shrink": "NaN"}', '{"shrink": -1}', '{"k": true}']:
    add(f"SELECT * FROM recsys.train(@T@, 'bi', 'item_knn', '{params}')")
for alg, params in [("als", '{"factors": 0}'), ("als", '{"factors": 100000}'), ("als", '{"regularization": -1}'),
                    ("als", '{"alpha": "NaN"}'), ("als", '{"iterations": 0}'), ("als", '{"iterations": 1e9}'),
                    ("ease", '{"lambda": -5}'), ("ease", '{"lambda": "Infinity"}'), ("ease", '{"max_items": 0}'),
                    ("bpr", '{"lr": 0}'), ("bpr", '{"lr": 100}'), ("ncf", '{"hidden": 2}'), ("ncf", '{"batch_size": 0}'),
                    ("ncf", '{"negatives": 0}'), ("ncf", '{"lr": 10, "epochs": 1}'), ("sequential", '{}'),
                    ("two_tower", '{}'), ("content", '{}'), ("hybrid", '{}'), ("hybrid", '{"members": []}'),
                    ("hybrid", '{"members": [{"algorithm": "hybrid"}, {"algorithm": "als"}]}'),
                    ("hybrid", '{"members": [{"algorithm": "als", "weight": "NaN"}, {"algorithm": "ease"}]}'),
                    ("popularity", '{"fallback": "nope"}'), ("popularity", '{"fallback": "t_self"}'),
                    ("nope", '{}'), ("", '{}'), ("ITEM_KNN", '{}')]:
    add(f"SELECT * FROM recsys.train(@T@, 'bi', '{alg}', '{params}')")
for col in ["'nope'", "'rating'", "''", "'ts'", "'user_id; DROP TABLE bi'"]:
    add(f"SELECT * FROM recsys.train(@T@, 'bi', 'item_knn', user_column => {col})")
    add(f"SELECT * FROM recsys.train(@T@, 'bi', 'item_knn', item_column => {col})")
add("SELECT * FROM recsys.train(@T@, 'bi', 'sequential', time_column => 'rating')")
add("SELECT * FROM recsys.train(@T@, 'bi', 'content', items => 'bi_items', item_text => 'no_column')")
add("SELECT * FROM recsys.train(@T@, 'bi', 'content', items => 'bi_items', item_text => 'item_id')")
add("SELECT * FROM recsys.train(@T@, 'bi', 'content', items => 'bi_items')")
add("SELECT * FROM recsys.train(@T@, 'bi', 'item_knn', items => 'bi_items', item_text => 'title')")
add("SELECT * FROM recsys.train(repeat('x', 300), 'bi', 'popularity')")
add("SET recsys.max_memory_mb = 1; SELECT * FROM recsys.train(@T@, 'bi', 'als', '{\"factors\": 1024}')")
add("SET recsys.max_memory_mb = 1; SELECT * FROM recsys.train(@T@, 'bi', 'ncf', '{\"factors\": 1024, \"hidden\": 4096}')")
add("SET recsys.max_memory_mb = 1; SELECT * FROM recsys.train(@T@, 'bi', 'hybrid', '{\"members\": [{\"algorithm\": \"als\", \"params\": {\"factors\": 1024}}, {\"algorithm\": \"ease\"}]}')")
add("SET recsys.max_memory_mb = 1; SELECT * FROM recsys.train(@T@, 'bi_big', 'popularity')")
add("SET recsys.max_threads = 0")
add("SET recsys.max_memory_mb = -1")
add("SET recsys.device = 'tpu'")

# evaluate, split, tune, synthetic_interactions.
for args in ["NULL, 'bi_test'", "'m_knn', NULL", "'m_knn', 'bi_test', NULL", "'m_knn', 'bi_test', -3",
             "'m_knn', 'no_such_table'", "'m_knn', 'bi_empty'", "'m_knn', 'bi_text_ids'", "'nope', 'bi_test'",
             "'m_knn', 'bi_test', 2147483647"]:
    add(f"SELECT * FROM recsys.evaluate({args})")
for args in ["'bi', 's_tr', 's_te', 'random', 'NaN'", "'bi', 's_tr', 's_te', 'random', -0.5", "'bi', 's_tr', 's_te', 'random', 1.5",
             "'bi', 's_tr', 's_te', 'nope'", "'bi', 'bi', 's_te'", "'bi', NULL, 's_te'", "NULL, 's_tr', 's_te'",
             "'bi', 's_tr', 's_tr'", "'bi', 's_tr', 's_te', 'temporal'", "'bi', 's_tr', 's_te', 'random', 0.2, NULL",
             "'bi_empty', 's_tr', 's_te'", "'bi', 's tr\"; DROP TABLE bi; --', 's_te'"]:
    add(f"SELECT * FROM recsys.split({args})")
for args in ["'t_tune', 'bi', 'item_knn', '{}'", "'t_tune', 'bi', 'item_knn', '{\"k\": []}'",
             "'t_tune', 'bi', 'item_knn', '{\"k\": [\"a\"]}'", "'t_tune', 'bi', 'item_knn', '[1]'",
             "'t_tune', 'bi', 'item_knn', '{\"k\": [5]}', 'nope'", "'t_tune', 'bi', 'item_knn', '{\"k\": [5]}', 'ndcg', 0",
             "'t_tune', 'bi', 'sequential', '{\"epochs\": [1]}'", "'t_tune', 'bi', 'item_knn', NULL",
             "'t_tune', 'bi', 'item_knn', '{\"k\": [5]}', validation_fraction => 0"]:
    add(f"SELECT * FROM recsys.tune({args})")
for args in ["-1, 10, 100", "10, -1, 100", "10, 10, -1", "0, 0, 0", "10, 10, 0", "NULL, 10, 10", "10, 10, 10, NULL",
             "2147483647, 2147483647, 10", "10, 10, 9223372036854775807", "1, 1, 5"]:
    add(f"SELECT count(*) FROM recsys.synthetic_interactions({args})")

# What some calls must give (a substring of the call -> its SQLSTATE, "ok" for a result); the
# rest must just not be an internal error.
# Model files: NULL in each argument, unknown models and versions, bytes that are no model file.
for args in ["NULL", "'nope'", "''", "'m_knn', 0", "'m_knn', -1", "'m_knn', NULL", "'m_knn', 2147483647"]:
    add(f"SELECT octet_length(recsys.export_model({args}))")
imp = ["@T@", "recsys.export_model('m_knn')", "'bi'"]
for i in range(len(imp)):
    args = list(imp)
    args[i] = "NULL"
    add(f"SELECT * FROM recsys.import_model({', '.join(args)})")
for f in ["''::bytea", "'\\x00'::bytea", "convert_to('not a model file at all', 'UTF8')", "substring(recsys.export_model('m_als') from 1 for 100)",
          "recsys.export_model('m_als') || '\\x00'::bytea", "overlay(recsys.export_model('m_ease') placing '\\x7f7f'::bytea from 2000)"]:
    add(f"SELECT * FROM recsys.import_model(@T@, {f}, 'bi')")
add("SELECT * FROM recsys.import_model(@T@, recsys.export_model('m_content'), 'bi')")
add("SELECT * FROM recsys.import_model(@T@, recsys.export_model('m_knn'), 'bi', user_column => 'nope')")

EXPECT = [
    ("recommend(1, 0,", "22023"), ("recommend(1, -1,", "22023"), ("similar_items(1, 0,", "22023"),
    ("recommend(1, 2147483647,", "ok"), ("candidates => '{}'", "ok"), ("ARRAY(SELECT generate_series(1, 200000)", "ok"),
    ("{NaN,1}", "22023"), ("{Infinity,1}", "22023"), ("'{1,2,3}'::real[], '{1,2}'", "22023"),
    ("max_memory_mb = 1;", "54000"), ("synthetic_interactions(2147483647, 2147483647", "54000"),
    ("'no_such_table'", "42P01"), (", 'bi_text_ids', '", "42804"), (", 'bi_empty', '", "22023"), (", 'bi_view', '", "ok"),
    (", 'bi_parted', '", "ok"), (", 'bi_dupes', '", "ok"), ("filter => 'item_id = 1; SELECT 1'", "42601"),
    ("recommend(1, 10, 'nope')", "42704"), ("recommend('abc'", "22P02"), ("recommend(1.5,", "42883"),
    ("{\"k\": \"ten\"}", "22023"), ("{\"nope\": 1}", "22023"), ("'ITEM_KNN'", "22023"), ("deploy('m_knn', 0)", "42704"),
    ("export_model('nope')", "42704"), ("export_model('m_knn', 0)", "42704"), ("export_model(NULL)", "22004"),
    ("import_model(@T@, '\\x00'::bytea", "22023"), ("|| '\\x00'::bytea, 'bi')", "22023"), ("placing '\\x7f7f'", "22023"),
    ("export_model('m_content'), 'bi')", "22023"),
    ("user_column => 'user_id; DROP TABLE bi'", "42703"), ("'bi_negative', 'als', rating_column", "ok"), ("'bi_negative', 'ease', rating_column", "22023"),
    ("'bi_negative', 'slim', rating_column", "22023"), ("diversity => -0.1", "22023"), ("diversity => 1.0000001", "22023"),
    ("'m_pop', diversity => 0.5", "ok"), ("'m_ease', diversity => 0.5", "ok"), ("'m_als', diversity => 1)", "ok"),
    ("'m_ncf', diversity => 0.5", "0A000"), ("recommend(1, 10 * 214748364,", "22023"), ("1000, 'm_knn', diversity => 0.3", "ok"), ("filter => 'item_id <> $1'", "ok"), ("filter => 'item_id <> $2'", "42P02"),
    ("search => NULL", "22004"), ("trials => -1", "22023"), ("time_budget => -1", "22023"), ("metric => 'rmse'", "22023"),
    ("'{\"weighting\": \"nope\"}'", "22023"), ("'biased_mf', '{\"weighting\": \"log\"}'", "22023"), ("split('bi', 'bi', 's_te')", "42P07"),
]

if __name__ == "__main__":
    # Every train gets a model name of its own (t<line>), so that a failed one can be checked to
    # have left nothing in the catalog.
    import sys
    for n, c in enumerate(calls):
        print(c.replace("\n", " ").replace("@T@", f"'t{n}'"))
    if len(sys.argv) > 1:  # the expectations, one "line,state" per matched call
        with open(sys.argv[1], "w") as f:
            for n, c in enumerate(calls):
                for sub, state in EXPECT:
                    if sub in c:
                        f.write(f"{n + 1},{state}\n")
                        break
