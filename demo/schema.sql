-- The demo read model: an e-commerce catalogue (categories → products →
-- reviews → inventory) served as JSONB documents by three TVIEWs, one of
-- them a cascade (tv_category embeds tv_product's documents).
CREATE TABLE tb_category (
    pk_category bigint PRIMARY KEY,
    name        text NOT NULL,
    slug        text NOT NULL UNIQUE
);
CREATE TABLE tb_product (
    pk_product  bigint PRIMARY KEY,
    fk_category bigint NOT NULL REFERENCES tb_category,
    name        text NOT NULL,
    price       numeric(10,2) NOT NULL
);
CREATE INDEX ON tb_product (fk_category);
CREATE TABLE tb_review (
    pk_review   bigint PRIMARY KEY,
    fk_product  bigint NOT NULL REFERENCES tb_product ON DELETE CASCADE,
    rating      int NOT NULL CHECK (rating BETWEEN 1 AND 5),
    body        text
);
CREATE INDEX ON tb_review (fk_product);
CREATE TABLE tb_inventory (
    fk_product  bigint PRIMARY KEY REFERENCES tb_product ON DELETE CASCADE,
    quantity    int NOT NULL,
    warehouse   text NOT NULL
);

-- Deterministic data: 20 categories, 1000 products, ~3000 reviews.
INSERT INTO tb_category SELECT i, 'Category ' || i, 'category-' || i FROM generate_series(1, 20) i;
INSERT INTO tb_product SELECT i, 1 + i % 20, 'Product ' || i, (i % 97) + 0.99 FROM generate_series(1, 1000) i;
INSERT INTO tb_review SELECT i, 1 + (i * 7) % 1000, 1 + i % 5, 'Review ' || i FROM generate_series(1, 3000) i;
INSERT INTO tb_inventory SELECT i, (i * 13) % 50, 'wh-' || (i % 3) FROM generate_series(1, 1000) i WHERE i % 10 <> 0;

-- One review, with its product's name.
CREATE TABLE tv_review AS
SELECT r.pk_review, r.fk_product,
       jsonb_build_object('id', r.pk_review, 'rating', r.rating, 'body', r.body,
                          'product', jsonb_build_object('id', p.pk_product, 'name', p.name)) AS data
FROM tb_review r JOIN tb_product p ON p.pk_product = r.fk_product;

-- One product: its category, a summary of its reviews, its stock.
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

-- One category with the documents of its products: a cascade from tv_product.
CREATE TABLE tv_category AS
SELECT c.pk_category,
       jsonb_build_object(
         'id', c.pk_category, 'name', c.name, 'slug', c.slug,
         'products', coalesce((SELECT jsonb_agg(tp.data ORDER BY tp.pk_product)
                               FROM tv_product tp WHERE tp.fk_category = c.pk_category), '[]')) AS data
FROM tb_category c;
