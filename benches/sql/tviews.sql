-- pg_tviews: the demo's three TVIEWs (demo/schema.sql), and the index the cascade's refresh
-- needs (tv_category reads tv_product by fk_category).
CREATE TABLE tv_review AS
SELECT r.pk_review, r.fk_product,
       jsonb_build_object('id', r.pk_review, 'rating', r.rating, 'body', r.body,
                          'product', jsonb_build_object('id', p.pk_product, 'name', p.name)) AS data
FROM tb_review r JOIN tb_product p ON p.pk_product = r.fk_product;

CREATE TABLE tv_product AS
SELECT p.pk_product, p.fk_category,
       jsonb_build_object(
         'id', p.pk_product, 'name', p.name, 'price', p.price,
         'category', jsonb_build_object('id', c.pk_category, 'name', c.name, 'slug', c.slug),
         'reviews', jsonb_build_object(
             'count', (SELECT count(*) FROM tb_review r WHERE r.fk_product = p.pk_product),
             'average', (SELECT round(avg(r.rating), 2) FROM tb_review r WHERE r.fk_product = p.pk_product)),
         'stock', coalesce(i.quantity, 0)) AS data
FROM tb_product p
JOIN tb_category c ON c.pk_category = p.fk_category
LEFT JOIN tb_inventory i ON i.fk_product = p.pk_product;
CREATE INDEX ON tv_product (fk_category);

CREATE TABLE tv_category AS
SELECT c.pk_category,
       jsonb_build_object(
         'id', c.pk_category, 'name', c.name, 'slug', c.slug,
         'products', coalesce((SELECT jsonb_agg(tp.data ORDER BY tp.pk_product)
                               FROM tv_product tp WHERE tp.fk_category = c.pk_category), '[]')) AS data
FROM tb_category c;
