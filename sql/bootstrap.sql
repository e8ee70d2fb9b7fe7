-- The catalog of pg_recsys: one row per model version, and the index-like tables that training
-- writes and anyone with rights can join. Registered for pg_dump so models survive dump/restore.

CREATE TABLE recsys.models (
    id           bigserial PRIMARY KEY,
    name         text NOT NULL CHECK (name <> ''),
    version      int NOT NULL CHECK (version > 0),
    algorithm    text NOT NULL,
    params       jsonb NOT NULL DEFAULT '{}',
    source       text NOT NULL,
    columns      jsonb NOT NULL,
    owner        name NOT NULL DEFAULT current_user,
    trained_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    seconds      float8 NOT NULL DEFAULT 0,
    users        bigint,
    items        bigint,
    interactions bigint,
    deployed     bool NOT NULL DEFAULT false,
    metrics      jsonb NOT NULL DEFAULT '{}',
    UNIQUE (name, version)
);
CREATE UNIQUE INDEX models_one_deployed_per_name ON recsys.models (name) WHERE deployed;

CREATE TABLE recsys.item_neighbors (
    model_id    bigint NOT NULL REFERENCES recsys.models (id) ON DELETE CASCADE,
    item_id     bigint NOT NULL,
    neighbor_id bigint NOT NULL,
    score       real NOT NULL,
    PRIMARY KEY (model_id, item_id, neighbor_id)
);

CREATE TABLE recsys.user_neighbors (
    model_id    bigint NOT NULL REFERENCES recsys.models (id) ON DELETE CASCADE,
    user_id     bigint NOT NULL,
    neighbor_id bigint NOT NULL,
    score       real NOT NULL,
    PRIMARY KEY (model_id, user_id, neighbor_id)
);

CREATE TABLE recsys.item_factors (
    model_id bigint NOT NULL REFERENCES recsys.models (id) ON DELETE CASCADE,
    item_id  bigint NOT NULL,
    factors  real[] NOT NULL,
    PRIMARY KEY (model_id, item_id)
);

CREATE TABLE recsys.user_factors (
    model_id bigint NOT NULL REFERENCES recsys.models (id) ON DELETE CASCADE,
    user_id  bigint NOT NULL,
    factors  real[] NOT NULL,
    PRIMARY KEY (model_id, user_id)
);

CREATE TABLE recsys.model_blobs (
    model_id bigint NOT NULL REFERENCES recsys.models (id) ON DELETE CASCADE,
    part     int NOT NULL,
    data     bytea NOT NULL,
    PRIMARY KEY (model_id, part)
);

SELECT pg_catalog.pg_extension_config_dump('recsys.models', '');
SELECT pg_catalog.pg_extension_config_dump('recsys.models_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('recsys.item_neighbors', '');
SELECT pg_catalog.pg_extension_config_dump('recsys.user_neighbors', '');
SELECT pg_catalog.pg_extension_config_dump('recsys.item_factors', '');
SELECT pg_catalog.pg_extension_config_dump('recsys.user_factors', '');
SELECT pg_catalog.pg_extension_config_dump('recsys.model_blobs', '');

-- Everyone may use the functions and read the catalog; only the extension owner writes it (rows
-- are visible per owning role since 0.2.0: sql/pg_recsys--0.1.0--0.2.0.sql, also run at install).
GRANT USAGE ON SCHEMA recsys TO PUBLIC;
GRANT SELECT ON recsys.models, recsys.item_neighbors, recsys.user_neighbors,
    recsys.item_factors, recsys.user_factors, recsys.model_blobs TO PUBLIC;
