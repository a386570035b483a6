-- Serving tails the catalog by modification time (new items, takedowns).
CREATE INDEX items_updated_at ON items (updated_at, item_id);
