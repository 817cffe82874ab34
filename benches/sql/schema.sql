-- Source tables of the benchmark: the demo read model's (demo/schema.sql), without its data.
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
