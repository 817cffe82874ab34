-- Hand-written triggers, row level: the read model of the TVIEWs (hw_review, hw_product,
-- hw_category) kept by AFTER ... FOR EACH ROW triggers on the four sources, the way a careful
-- engineer writes them:
--  * each document is recomputed from the sources by its own query (the definition restricted
--    to one key), upserted, and written only when it differs (IS DISTINCT FROM);
--  * a product whose document changed refreshes its category (old and new);
--  * changes that cannot affect a document are skipped (a review's body does not change its
--    product's summary, an inventory's warehouse is not in any document).
-- NOT safe under concurrency: two transactions changing different products of one category
-- each recompute the category from a snapshot without the other's change, and the second
-- upsert keeps its stale document (what pg_tviews' flush-time lock exists for).

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

-- One category document.
CREATE FUNCTION hw_category_refresh(c_id bigint) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO hw_category AS h (pk_category, data)
  SELECT c.pk_category,
         jsonb_build_object(
           'id', c.pk_category, 'name', c.name, 'slug', c.slug,
           'products', coalesce((SELECT jsonb_agg(tp.data ORDER BY tp.pk_product)
                                 FROM hw_product tp WHERE tp.fk_category = c.pk_category), '[]'))
  FROM tb_category c WHERE c.pk_category = c_id
  ON CONFLICT (pk_category) DO UPDATE SET data = EXCLUDED.data
  WHERE h.data IS DISTINCT FROM EXCLUDED.data;
  IF NOT FOUND THEN
    DELETE FROM hw_category h WHERE h.pk_category = c_id
      AND NOT EXISTS (SELECT FROM tb_category c WHERE c.pk_category = c_id);
  END IF;
END $$;

-- One product document; refreshes its old and new category when it changed.
CREATE FUNCTION hw_product_refresh(p_id bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  old_cat bigint;
  new_cat bigint;
BEGIN
  SELECT h.fk_category INTO old_cat FROM hw_product h WHERE h.pk_product = p_id;
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
  WHERE p.pk_product = p_id
  ON CONFLICT (pk_product) DO UPDATE SET fk_category = EXCLUDED.fk_category, data = EXCLUDED.data
  WHERE (h.fk_category, h.data) IS DISTINCT FROM (EXCLUDED.fk_category, EXCLUDED.data)
  RETURNING h.fk_category INTO new_cat;
  IF FOUND THEN
    PERFORM hw_category_refresh(new_cat);
    IF old_cat IS DISTINCT FROM new_cat AND old_cat IS NOT NULL THEN
      PERFORM hw_category_refresh(old_cat);
    END IF;
  ELSIF old_cat IS NOT NULL AND NOT EXISTS (SELECT FROM tb_product p WHERE p.pk_product = p_id) THEN
    DELETE FROM hw_product h WHERE h.pk_product = p_id;
    PERFORM hw_category_refresh(old_cat);
  END IF;
END $$;

-- Every product of one category (its name or slug changed), then the category once.
CREATE FUNCTION hw_products_of_category_refresh(c_id bigint) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
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
  WHERE p.fk_category = c_id
  ON CONFLICT (pk_product) DO UPDATE SET fk_category = EXCLUDED.fk_category, data = EXCLUDED.data
  WHERE (h.fk_category, h.data) IS DISTINCT FROM (EXCLUDED.fk_category, EXCLUDED.data);
  PERFORM hw_category_refresh(c_id);
END $$;

-- One review document.
CREATE FUNCTION hw_review_refresh(r_id bigint) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO hw_review AS h (pk_review, fk_product, data)
  SELECT r.pk_review, r.fk_product,
         jsonb_build_object('id', r.pk_review, 'rating', r.rating, 'body', r.body,
                            'product', jsonb_build_object('id', p.pk_product, 'name', p.name))
  FROM tb_review r JOIN tb_product p ON p.pk_product = r.fk_product
  WHERE r.pk_review = r_id
  ON CONFLICT (pk_review) DO UPDATE SET fk_product = EXCLUDED.fk_product, data = EXCLUDED.data
  WHERE (h.fk_product, h.data) IS DISTINCT FROM (EXCLUDED.fk_product, EXCLUDED.data);
  IF NOT FOUND THEN
    DELETE FROM hw_review h WHERE h.pk_review = r_id
      AND NOT EXISTS (SELECT FROM tb_review r WHERE r.pk_review = r_id);
  END IF;
END $$;

-- The review documents of one product (its name changed).
CREATE FUNCTION hw_reviews_of_product_refresh(p_id bigint) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO hw_review AS h (pk_review, fk_product, data)
  SELECT r.pk_review, r.fk_product,
         jsonb_build_object('id', r.pk_review, 'rating', r.rating, 'body', r.body,
                            'product', jsonb_build_object('id', p.pk_product, 'name', p.name))
  FROM tb_review r JOIN tb_product p ON p.pk_product = r.fk_product
  WHERE r.fk_product = p_id
  ON CONFLICT (pk_review) DO UPDATE SET fk_product = EXCLUDED.fk_product, data = EXCLUDED.data
  WHERE (h.fk_product, h.data) IS DISTINCT FROM (EXCLUDED.fk_product, EXCLUDED.data);
END $$;

CREATE FUNCTION hw_on_category() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    PERFORM hw_category_refresh(NEW.pk_category);
  ELSIF TG_OP = 'UPDATE' THEN
    IF (OLD.pk_category, OLD.name, OLD.slug) IS DISTINCT FROM (NEW.pk_category, NEW.name, NEW.slug) THEN
      PERFORM hw_products_of_category_refresh(NEW.pk_category);
      IF OLD.pk_category <> NEW.pk_category THEN
        PERFORM hw_category_refresh(OLD.pk_category);
      END IF;
    END IF;
  ELSE
    PERFORM hw_category_refresh(OLD.pk_category);
  END IF;
  RETURN NULL;
END $$;

CREATE FUNCTION hw_on_product() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    PERFORM hw_product_refresh(NEW.pk_product);
  ELSIF TG_OP = 'UPDATE' THEN
    PERFORM hw_product_refresh(NEW.pk_product);
    IF OLD.pk_product <> NEW.pk_product THEN
      PERFORM hw_product_refresh(OLD.pk_product);
    END IF;
    IF OLD.name IS DISTINCT FROM NEW.name THEN
      PERFORM hw_reviews_of_product_refresh(NEW.pk_product);
    END IF;
  ELSE
    -- Its reviews and inventory go by ON DELETE CASCADE, and their triggers follow them.
    PERFORM hw_product_refresh(OLD.pk_product);
  END IF;
  RETURN NULL;
END $$;

CREATE FUNCTION hw_on_review() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    PERFORM hw_review_refresh(NEW.pk_review);
    PERFORM hw_product_refresh(NEW.fk_product);
  ELSIF TG_OP = 'UPDATE' THEN
    PERFORM hw_review_refresh(NEW.pk_review);
    IF OLD.pk_review <> NEW.pk_review THEN
      PERFORM hw_review_refresh(OLD.pk_review);
    END IF;
    -- The product's summary reads only the rating and the product.
    IF (OLD.fk_product, OLD.rating) IS DISTINCT FROM (NEW.fk_product, NEW.rating) THEN
      PERFORM hw_product_refresh(NEW.fk_product);
      IF OLD.fk_product <> NEW.fk_product THEN
        PERFORM hw_product_refresh(OLD.fk_product);
      END IF;
    END IF;
  ELSE
    PERFORM hw_review_refresh(OLD.pk_review);
    PERFORM hw_product_refresh(OLD.fk_product);
  END IF;
  RETURN NULL;
END $$;

CREATE FUNCTION hw_on_inventory() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    PERFORM hw_product_refresh(NEW.fk_product);
  ELSIF TG_OP = 'UPDATE' THEN
    -- The warehouse is in no document.
    IF (OLD.fk_product, OLD.quantity) IS DISTINCT FROM (NEW.fk_product, NEW.quantity) THEN
      PERFORM hw_product_refresh(NEW.fk_product);
      IF OLD.fk_product <> NEW.fk_product THEN
        PERFORM hw_product_refresh(OLD.fk_product);
      END IF;
    END IF;
  ELSE
    PERFORM hw_product_refresh(OLD.fk_product);
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER hw_category AFTER INSERT OR UPDATE OR DELETE ON tb_category
  FOR EACH ROW EXECUTE FUNCTION hw_on_category();
CREATE TRIGGER hw_product AFTER INSERT OR UPDATE OR DELETE ON tb_product
  FOR EACH ROW EXECUTE FUNCTION hw_on_product();
CREATE TRIGGER hw_review AFTER INSERT OR UPDATE OR DELETE ON tb_review
  FOR EACH ROW EXECUTE FUNCTION hw_on_review();
CREATE TRIGGER hw_inventory AFTER INSERT OR UPDATE OR DELETE ON tb_inventory
  FOR EACH ROW EXECUTE FUNCTION hw_on_inventory();
