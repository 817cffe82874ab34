-- Materialized views: the same read model, refreshed by the client after each change
-- (REFRESH MATERIALIZED VIEW [CONCURRENTLY], each view the change can affect, mv_category
-- last since it reads mv_product). CONCURRENTLY needs a unique index on each.
CREATE MATERIALIZED VIEW mv_review AS SELECT * FROM def_review;
CREATE UNIQUE INDEX ON mv_review (pk_review);
CREATE MATERIALIZED VIEW mv_product AS SELECT * FROM def_product;
CREATE UNIQUE INDEX ON mv_product (pk_product);
CREATE INDEX ON mv_product (fk_category);
CREATE MATERIALIZED VIEW mv_category AS
SELECT c.pk_category,
       jsonb_build_object(
         'id', c.pk_category, 'name', c.name, 'slug', c.slug,
         'products', coalesce((SELECT jsonb_agg(tp.data ORDER BY tp.pk_product)
                               FROM mv_product tp WHERE tp.fk_category = c.pk_category), '[]')) AS data
FROM tb_category c;
CREATE UNIQUE INDEX ON mv_category (pk_category);
