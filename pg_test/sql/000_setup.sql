-- Shared by the files that follow (pg_regress runs them in order in one database):
-- regress.err(q) runs q and shows the SQLSTATE, message, detail and hint of the error it raises.
CREATE EXTENSION IF NOT EXISTS pg_recsys;
CREATE SCHEMA regress;
CREATE FUNCTION regress.err(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE d text; h text;
BEGIN EXECUTE q; RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL, h = PG_EXCEPTION_HINT;
  RETURN SQLSTATE || ': ' || SQLERRM || coalesce(E'\n  DETAIL: ' || nullif(d, ''), '')
                                      || coalesce(E'\n  HINT: ' || nullif(h, ''), '');
END $$;
