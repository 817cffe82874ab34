-- Hand-written triggers, statement level: the same read model (hw_review, hw_product,
-- hw_category) kept by AFTER ... FOR EACH STATEMENT triggers with transition tables, one
-- set-based statement per derived table:
--  * the keys a statement can affect are read from its transition tables (rows that did not
--    change in a column a document reads are left out);
--  * documents are recomputed for those keys (the definition restricted by = ANY), upserted,
--    and written only when they differ; gone keys are deleted;
--  * products whose document changed, and categories whose products did, follow.
-- NOT safe under concurrency, like the row-level variant (see triggers_row.sql).

CREATE TABLE hw_review AS SELECT * FROM def_review;
ALTER TABLE hw_review ADD PRIMARY KEY (pk_review);
CREATE TABLE hw_product AS SELECT * FROM def_product;
ALTER TABLE hw_product ADD PRIMARY KEY (pk_product);
CREATE INDEX ON hw_product (fk_category);
CREATE TABLE hw_category AS
SELECT c.pk_category,
       jsonb_build_object(
         'id', c.pk_category, 'name', c.name, 'slug', c.slug,
         'products', coalesce((SELECT jsonb_agg(tp.data ORDER BY tp.pk_product)
                               FROM hw_product tp WHERE tp.fk_category = c.pk_category), '[]')) AS data
FROM tb_category c;
ALTER TABLE hw_category ADD PRIMARY KEY (pk_category);

CREATE FUNCTION hw_categories_refresh(ids bigint[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF ids IS NULL OR cardinality(ids) = 0 THEN
    RETURN;
  END IF;
  DELETE FROM hw_category h WHERE h.pk_category = ANY (ids)
    AND NOT EXISTS (SELECT FROM tb_category c WHERE c.pk_category = h.pk_category);
  INSERT INTO hw_category AS h (pk_category, data)
  SELECT c.pk_category,
         jsonb_build_object(
           'id', c.pk_category, 'name', c.name, 'slug', c.slug,
           'products', coalesce((SELECT jsonb_agg(tp.data ORDER BY tp.pk_product)
                                 FROM hw_product tp WHERE tp.fk_category = c.pk_category), '[]'))
  FROM tb_category c WHERE c.pk_category = ANY (ids)
  ON CONFLICT (pk_category) DO UPDATE SET data = EXCLUDED.data
  WHERE h.data IS DISTINCT FROM EXCLUDED.data;
END $$;

-- Recomputes the given products and returns the categories whose documents may have changed
-- (old and new categories of the products that were written or deleted).
CREATE FUNCTION hw_products_refresh(ids bigint[]) RETURNS bigint[] LANGUAGE plpgsql AS $$
DECLARE
  cats bigint[];
BEGIN
  IF ids IS NULL OR cardinality(ids) = 0 THEN
    RETURN '{}';
  END IF;
  WITH old AS (
    SELECT h.pk_product, h.fk_category FROM hw_product h WHERE h.pk_product = ANY (ids)
  ), del AS (
    DELETE FROM hw_product h WHERE h.pk_product = ANY (ids)
      AND NOT EXISTS (SELECT FROM tb_product p WHERE p.pk_product = h.pk_product)
    RETURNING h.fk_category
  ), ups AS (
    INSERT INTO hw_product AS h (pk_product, fk_category, data)
    SELECT p.pk_product, p.fk_category,
           jsonb_build_object(
             'id', p.pk_product, 'name', p.name, 'price', p.price,
             'category', jsonb_build_object('id', c.pk_category, 'name', c.name, 'slug', c.slug),
             'reviews', jsonb_build_object(
                 'count', (SELECT count(*) FROM tb_review r WHERE r.fk_product = p.pk_product),
                 'average', (SELECT round(avg(r.rating), 2) FROM tb_review r WHERE r.fk_product = p.pk_product)),
             'stock', coalesce(i.quantity, 0))
    FROM tb_product p
    JOIN tb_category c ON c.pk_category = p.fk_category
    LEFT JOIN tb_inventory i ON i.fk_product = p.pk_product
    WHERE p.pk_product = ANY (ids)
    ON CONFLICT (pk_product) DO UPDATE SET fk_category = EXCLUDED.fk_category, data = EXCLUDED.data
    WHERE (h.fk_category, h.data) IS DISTINCT FROM (EXCLUDED.fk_category, EXCLUDED.data)
    RETURNING h.pk_product, h.fk_category
  )
  SELECT array_agg(DISTINCT x.cat) INTO cats FROM (
    SELECT del.fk_category FROM del
    UNION ALL SELECT ups.fk_category FROM ups
    UNION ALL SELECT old.fk_category FROM old JOIN ups ON ups.pk_product = old.pk_product
  ) x(cat);
  RETURN coalesce(cats, '{}');
END $$;

CREATE FUNCTION hw_reviews_refresh(ids bigint[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF ids IS NULL OR cardinality(ids) = 0 THEN
    RETURN;
  END IF;
  DELETE FROM hw_review h WHERE h.pk_review = ANY (ids)
    AND NOT EXISTS (SELECT FROM tb_review r WHERE r.pk_review = h.pk_review);
  INSERT INTO hw_review AS h (pk_review, fk_product, data)
  SELECT r.pk_review, r.fk_product,
         jsonb_build_object('id', r.pk_review, 'rating', r.rating, 'body', r.body,
                            'product', jsonb_build_object('id', p.pk_product, 'name', p.name))
  FROM tb_review r JOIN tb_product p ON p.pk_product = r.fk_product
  WHERE r.pk_review = ANY (ids)
  ON CONFLICT (pk_review) DO UPDATE SET fk_product = EXCLUDED.fk_product, data = EXCLUDED.data
  WHERE (h.fk_product, h.data) IS DISTINCT FROM (EXCLUDED.fk_product, EXCLUDED.data);
END $$;

-- The review documents of products whose name changed.
CREATE FUNCTION hw_reviews_of_products_refresh(ids bigint[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF ids IS NULL OR cardinality(ids) = 0 THEN
    RETURN;
  END IF;
  INSERT INTO hw_review AS h (pk_review, fk_product, data)
  SELECT r.pk_review, r.fk_product,
         jsonb_build_object('id', r.pk_review, 'rating', r.rating, 'body', r.body,
                            'product', jsonb_build_object('id', p.pk_product, 'name', p.name))
  FROM tb_review r JOIN tb_product p ON p.pk_product = r.fk_product
  WHERE r.fk_product = ANY (ids)
  ON CONFLICT (pk_review) DO UPDATE SET fk_product = EXCLUDED.fk_product, data = EXCLUDED.data
  WHERE (h.fk_product, h.data) IS DISTINCT FROM (EXCLUDED.fk_product, EXCLUDED.data);
END $$;

-- tb_category
CREATE FUNCTION hw_category_ins() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM hw_categories_refresh(ARRAY(SELECT n.pk_category FROM n));
  RETURN NULL;
END $$;
CREATE FUNCTION hw_category_upd() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  changed bigint[];
BEGIN
  changed := ARRAY(
    SELECT pk_category FROM ((SELECT * FROM n EXCEPT SELECT * FROM o)
                             UNION ALL (SELECT * FROM o EXCEPT SELECT * FROM n)) d);
  IF cardinality(changed) > 0 THEN
    PERFORM hw_categories_refresh(changed || hw_products_refresh(ARRAY(
      SELECT p.pk_product FROM tb_product p WHERE p.fk_category = ANY (changed))));
  END IF;
  RETURN NULL;
END $$;
CREATE FUNCTION hw_category_del() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM hw_categories_refresh(ARRAY(SELECT o.pk_category FROM o));
  RETURN NULL;
END $$;

-- tb_product
CREATE FUNCTION hw_product_ins() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM hw_categories_refresh(hw_products_refresh(ARRAY(SELECT n.pk_product FROM n)));
  RETURN NULL;
END $$;
CREATE FUNCTION hw_product_upd() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM hw_categories_refresh(hw_products_refresh(ARRAY(
    SELECT pk_product FROM ((SELECT * FROM n EXCEPT SELECT * FROM o)
                            UNION ALL (SELECT * FROM o EXCEPT SELECT * FROM n)) d)));
  -- Reviews embed the product's name only.
  PERFORM hw_reviews_of_products_refresh(ARRAY(
    SELECT n.pk_product FROM n JOIN o ON o.pk_product = n.pk_product
    WHERE n.name IS DISTINCT FROM o.name));
  RETURN NULL;
END $$;
CREATE FUNCTION hw_product_del() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- Reviews and inventory go by ON DELETE CASCADE, and their triggers follow them.
  PERFORM hw_categories_refresh(hw_products_refresh(ARRAY(SELECT o.pk_product FROM o)));
  RETURN NULL;
END $$;

-- tb_review
CREATE FUNCTION hw_review_ins() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM hw_reviews_refresh(ARRAY(SELECT n.pk_review FROM n));
  PERFORM hw_categories_refresh(hw_products_refresh(ARRAY(SELECT DISTINCT n.fk_product FROM n)));
  RETURN NULL;
END $$;
CREATE FUNCTION hw_review_upd() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM hw_reviews_refresh(ARRAY(
    SELECT pk_review FROM ((SELECT * FROM n EXCEPT SELECT * FROM o)
                           UNION ALL (SELECT * FROM o EXCEPT SELECT * FROM n)) d));
  -- A product's summary reads only the ratings of its reviews.
  PERFORM hw_categories_refresh(hw_products_refresh(ARRAY(
    SELECT DISTINCT fk_product FROM (
      (SELECT pk_review, fk_product, rating FROM n EXCEPT SELECT pk_review, fk_product, rating FROM o)
      UNION ALL
      (SELECT pk_review, fk_product, rating FROM o EXCEPT SELECT pk_review, fk_product, rating FROM n)) d)));
  RETURN NULL;
END $$;
CREATE FUNCTION hw_review_del() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM hw_reviews_refresh(ARRAY(SELECT o.pk_review FROM o));
  PERFORM hw_categories_refresh(hw_products_refresh(ARRAY(SELECT DISTINCT o.fk_product FROM o)));
  RETURN NULL;
END $$;

-- tb_inventory
CREATE FUNCTION hw_inventory_ins() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM hw_categories_refresh(hw_products_refresh(ARRAY(SELECT n.fk_product FROM n)));
  RETURN NULL;
END $$;
CREATE FUNCTION hw_inventory_upd() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- The warehouse is in no document.
  PERFORM hw_categories_refresh(hw_products_refresh(ARRAY(
    SELECT DISTINCT fk_product FROM (
      (SELECT fk_product, quantity FROM n EXCEPT SELECT fk_product, quantity FROM o)
      UNION ALL
      (SELECT fk_product, quantity FROM o EXCEPT SELECT fk_product, quantity FROM n)) d)));
  RETURN NULL;
END $$;
CREATE FUNCTION hw_inventory_del() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM hw_categories_refresh(hw_products_refresh(ARRAY(SELECT o.fk_product FROM o)));
  RETURN NULL;
END $$;

CREATE TRIGGER hw_category_ins AFTER INSERT ON tb_category REFERENCING NEW TABLE AS n
  FOR EACH STATEMENT EXECUTE FUNCTION hw_category_ins();
CREATE TRIGGER hw_category_upd AFTER UPDATE ON tb_category REFERENCING OLD TABLE AS o NEW TABLE AS n
  FOR EACH STATEMENT EXECUTE FUNCTION hw_category_upd();
CREATE TRIGGER hw_category_del AFTER DELETE ON tb_category REFERENCING OLD TABLE AS o
  FOR EACH STATEMENT EXECUTE FUNCTION hw_category_del();
CREATE TRIGGER hw_product_ins AFTER INSERT ON tb_product REFERENCING NEW TABLE AS n
  FOR EACH STATEMENT EXECUTE FUNCTION hw_product_ins();
CREATE TRIGGER hw_product_upd AFTER UPDATE ON tb_product REFERENCING OLD TABLE AS o NEW TABLE AS n
  FOR EACH STATEMENT EXECUTE FUNCTION hw_product_upd();
CREATE TRIGGER hw_product_del AFTER DELETE ON tb_product REFERENCING OLD TABLE AS o
  FOR EACH STATEMENT EXECUTE FUNCTION hw_product_del();
CREATE TRIGGER hw_review_ins AFTER INSERT ON tb_review REFERENCING NEW TABLE AS n
  FOR EACH STATEMENT EXECUTE FUNCTION hw_review_ins();
CREATE TRIGGER hw_review_upd AFTER UPDATE ON tb_review REFERENCING OLD TABLE AS o NEW TABLE AS n
  FOR EACH STATEMENT EXECUTE FUNCTION hw_review_upd();
CREATE TRIGGER hw_review_del AFTER DELETE ON tb_review REFERENCING OLD TABLE AS o
  FOR EACH STATEMENT EXECUTE FUNCTION hw_review_del();
CREATE TRIGGER hw_inventory_ins AFTER INSERT ON tb_inventory REFERENCING NEW TABLE AS n
  FOR EACH STATEMENT EXECUTE FUNCTION hw_inventory_ins();
CREATE TRIGGER hw_inventory_upd AFTER UPDATE ON tb_inventory REFERENCING OLD TABLE AS o NEW TABLE AS n
  FOR EACH STATEMENT EXECUTE FUNCTION hw_inventory_upd();
CREATE TRIGGER hw_inventory_del AFTER DELETE ON tb_inventory REFERENCING OLD TABLE AS o
  FOR EACH STATEMENT EXECUTE FUNCTION hw_inventory_del();
