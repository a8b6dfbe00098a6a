-- moonshot ingest (issue 8): one coin per tweet. `moonshot ingest` inserts coin rows with
-- ON CONFLICT (tweet_id) DO NOTHING, which needs a unique index on tweet_id.
-- Idempotent: safe to run again. Rows without a tweet_id (NULL) are not affected.
-- If this fails with "could not create unique index", the table already holds the same
-- tweet_id twice: find them with
--   SELECT tweet_id, array_agg(id) FROM public.coins GROUP BY tweet_id HAVING count(*) > 1;
CREATE UNIQUE INDEX IF NOT EXISTS coins_tweet_id_key ON public.coins (tweet_id);
