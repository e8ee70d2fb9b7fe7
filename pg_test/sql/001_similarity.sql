-- recsys.cosine / recsys.pearson (real[] and float8[]) and recsys.jaccard (bigint[])
\set VERBOSITY terse

-- values, checked against hand-computed double-precision references to 1e-6
SELECT recsys.cosine(ARRAY[1,2,3]::float8[], ARRAY[4,5,6]::float8[]) AS cos_f8,
       abs(recsys.cosine(ARRAY[1,2,3]::float8[], ARRAY[4,5,6]::float8[]) - 32 / sqrt(14 * 77)) < 1e-6 AS f8_ok,
       abs(recsys.cosine(ARRAY[1,2,3]::real[], ARRAY[4,5,6]::real[]) - 32 / sqrt(14 * 77)) < 1e-6 AS real_ok;
SELECT recsys.cosine('{1,0}'::float8[], '{0,1}'::float8[]) AS orthogonal,
       recsys.cosine('{1,1}'::float8[], '{-2,-2}'::float8[]) AS opposite,
       recsys.cosine('{3}'::real[], '{5}'::real[]) AS parallel;
-- x = (1,2,3,4), y = (1,2,5,4): cov = 6, var_x = 5, var_y = 10 -> 6 / sqrt(50)
SELECT abs(recsys.pearson('{1,2,3,4}'::float8[], '{1,2,5,4}'::float8[]) - 6 / sqrt(50)) < 1e-6 AS pearson_f8_ok,
       abs(recsys.pearson('{1,2,3,4}'::real[], '{1,2,5,4}'::real[]) - 6 / sqrt(50)) < 1e-6 AS pearson_real_ok,
       recsys.pearson('{1,2,3}'::float8[], '{30,20,10}'::float8[]) AS anti;
SELECT recsys.jaccard('{1,2,3}', '{2,3,4}') AS half,
       recsys.jaccard('{1,1,2}', '{2,2}') AS duplicates_ignored,
       recsys.jaccard('{7}', '{}') AS one_empty;
-- the result types follow the argument types
SELECT pg_typeof(recsys.cosine('{1}'::real[], '{1}'::real[])) AS cosine_real,
       pg_typeof(recsys.pearson('{1,2}'::float8[], '{1,2}'::float8[])) AS pearson_f8;

-- undefined cases are NULL
SELECT recsys.cosine('{}'::float8[], '{}'::float8[]) IS NULL AS empty,
       recsys.cosine('{0,0}'::real[], '{1,2}'::real[]) IS NULL AS zero_vector,
       recsys.pearson('{3,3,3}'::float8[], '{1,2,3}'::float8[]) IS NULL AS zero_variance,
       recsys.pearson('{5}'::real[], '{2}'::real[]) IS NULL AS single_element,
       recsys.jaccard('{}'::bigint[], '{}'::bigint[]) IS NULL AS both_empty,
       recsys.cosine(NULL::float8[], '{1}') IS NULL AS null_argument;

-- errors
SELECT regress.err($$SELECT recsys.cosine('{1,2}'::float8[], '{1}'::float8[])$$);
SELECT regress.err($$SELECT recsys.pearson('{1,2,3}'::real[], '{1,2}'::real[])$$);
SELECT regress.err($$SELECT recsys.cosine('{1,NULL}'::real[], '{1,2}'::real[])$$);
SELECT regress.err($$SELECT recsys.pearson('{1,2}'::float8[], '{NULL,2}'::float8[])$$);
SELECT regress.err($$SELECT recsys.jaccard('{1,NULL}'::bigint[], '{1}'::bigint[])$$);
SELECT regress.err($$SELECT recsys.cosine('{1,NaN}'::float8[], '{1,2}'::float8[])$$);
SELECT regress.err($$SELECT recsys.pearson('{1,Infinity}'::real[], '{1,2}'::real[])$$);
SELECT regress.err($$SELECT recsys.cosine('{-Infinity}'::float8[], '{1}'::float8[])$$);

-- declared IMMUTABLE STRICT PARALLEL SAFE
SELECT p.proname, pg_get_function_identity_arguments(p.oid) AS args, p.provolatile, p.proisstrict, p.proparallel
FROM pg_proc p WHERE p.pronamespace = 'recsys'::regnamespace AND p.proname IN ('cosine', 'pearson', 'jaccard')
ORDER BY 1, 2;
