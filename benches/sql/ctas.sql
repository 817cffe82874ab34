-- The baseline of creation time: CREATE TABLE AS of the three definitions (the category's
-- documents read the product table, like the cascade, through an index on fk_category).
CREATE TABLE ctas_review AS SELECT * FROM def_review;
CREATE TABLE ctas_product AS SELECT * FROM def_product;
CREATE INDEX ON ctas_product (fk_category);
CREATE TABLE ctas_category AS
SELECT c.pk_category,
       jsonb_build_object(
         'id', c.pk_category, 'name', c.name, 'slug', c.slug,
         'products', coalesce((SELECT jsonb_agg(tp.data ORDER BY tp.pk_product)
                               FROM ctas_product tp WHERE tp.fk_category = c.pk_category), '[]')) AS data
FROM tb_category c;
