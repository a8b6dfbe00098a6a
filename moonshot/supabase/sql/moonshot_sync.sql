-- moonshot sync: what the moonshot service needs on the Twitter bot's `coins` table.
-- Idempotent: safe to run again (Supabase SQL editor, `supabase db push`, or psql).
-- Print it with `moonshot supabase sql`. Schema version 1 (see moonshot_schema_version).

-- The phase 3 plan's columns (kept NULL-able as the plan has them; image_synced is made
-- NOT NULL below so that "not synced" is one plain filter).
ALTER TABLE public.coins ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE public.coins ADD COLUMN IF NOT EXISTS image_url varchar(500);
ALTER TABLE public.coins ADD COLUMN IF NOT EXISTS image_filename varchar(255);
ALTER TABLE public.coins ADD COLUMN IF NOT EXISTS image_synced boolean DEFAULT false;
ALTER TABLE public.coins ADD COLUMN IF NOT EXISTS image_sync_timestamp timestamptz;
ALTER TABLE public.coins ADD COLUMN IF NOT EXISTS twitter_user varchar(50);
ALTER TABLE public.coins ADD COLUMN IF NOT EXISTS tweet_id varchar(50);

UPDATE public.coins SET image_synced = false WHERE image_synced IS NULL;
ALTER TABLE public.coins ALTER COLUMN image_synced SET DEFAULT false;
ALTER TABLE public.coins ALTER COLUMN image_synced SET NOT NULL;

-- The claim with lease: which moonshot service holds the coin, and until when.
ALTER TABLE public.coins ADD COLUMN IF NOT EXISTS claimed_by text;
ALTER TABLE public.coins ADD COLUMN IF NOT EXISTS claim_expires_at timestamptz;

-- Progress and launch outcome as the service reports them. sync_state is the service's
-- latest local state; launch_state is set once the coin ends (launched, rejected) or
-- needs a person (failed, needs_review), and takes the coin out of the pending query.
ALTER TABLE public.coins ADD COLUMN IF NOT EXISTS sync_state text;
ALTER TABLE public.coins ADD COLUMN IF NOT EXISTS launch_state text;
ALTER TABLE public.coins ADD COLUMN IF NOT EXISTS launched_at timestamptz;
ALTER TABLE public.coins ADD COLUMN IF NOT EXISTS token_address text;
ALTER TABLE public.coins ADD COLUMN IF NOT EXISTS last_error text;

-- The pending query: image present, not synced, no outcome yet, oldest first.
CREATE INDEX IF NOT EXISTS coins_moonshot_pending_idx ON public.coins (created_at, id)
    WHERE image_synced = false AND launch_state IS NULL AND image_url IS NOT NULL;
CREATE INDEX IF NOT EXISTS coins_moonshot_claimed_by_idx ON public.coins (claimed_by)
    WHERE claimed_by IS NOT NULL;

-- Claim up to p_limit pending coins for p_worker. A conditional PATCH with or= loses the
-- winner's reply on PostgREST v12 (PostgREST #3707), so claims go through this function:
-- FOR UPDATE SKIP LOCKED lets concurrent callers take disjoint rows, and a row another
-- caller claimed meanwhile fails the re-checked WHERE and is left out.
CREATE OR REPLACE FUNCTION public.moonshot_claim(
    p_worker text, p_limit integer DEFAULT 20, p_lease_seconds integer DEFAULT 600)
RETURNS SETOF public.coins
LANGUAGE sql VOLATILE
SET search_path = public, pg_temp
AS $$
    UPDATE public.coins AS c
       SET claimed_by = p_worker,
           claim_expires_at = now() + make_interval(secs => p_lease_seconds)
     WHERE c.id IN (
           SELECT p.id FROM public.coins AS p
            WHERE p.image_url IS NOT NULL AND p.image_url <> ''
              AND p.image_synced = false AND p.launch_state IS NULL
              AND (p.claimed_by IS NULL OR p.claim_expires_at < now())
            ORDER BY p.created_at, p.id
            LIMIT least(greatest(p_limit, 0), 1000)
            FOR UPDATE SKIP LOCKED)
    RETURNING c.*;
$$;

-- Extend the lease of the coins p_worker still holds; returns their ids (as text).
-- A coin missing from the answer was taken by another service after its lease expired.
CREATE OR REPLACE FUNCTION public.moonshot_renew(
    p_worker text, p_ids text[], p_lease_seconds integer DEFAULT 600)
RETURNS text[]
LANGUAGE sql VOLATILE
SET search_path = public, pg_temp
AS $$
    WITH renewed AS (
        UPDATE public.coins AS c
           SET claim_expires_at = now() + make_interval(secs => p_lease_seconds)
         WHERE c.id::text = ANY (p_ids) AND c.claimed_by = p_worker
        RETURNING c.id::text AS id)
    SELECT coalesce(array_agg(id ORDER BY id), '{}'::text[]) FROM renewed;
$$;

-- Give back claims of coins p_worker has not started (not synced, no outcome); returns
-- their ids. Coins already synced keep their claim as the record of who processed them.
CREATE OR REPLACE FUNCTION public.moonshot_release(p_worker text, p_ids text[])
RETURNS text[]
LANGUAGE sql VOLATILE
SET search_path = public, pg_temp
AS $$
    WITH released AS (
        UPDATE public.coins AS c
           SET claimed_by = NULL, claim_expires_at = NULL
         WHERE c.id::text = ANY (p_ids) AND c.claimed_by = p_worker
           AND c.image_synced = false AND c.launch_state IS NULL
        RETURNING c.id::text AS id)
    SELECT coalesce(array_agg(id ORDER BY id), '{}'::text[]) FROM released;
$$;

-- Lets `moonshot doctor` see which version of this file was applied.
CREATE OR REPLACE FUNCTION public.moonshot_schema_version()
RETURNS integer
LANGUAGE sql IMMUTABLE
AS $$ SELECT 1 $$;

-- Wake listening services at once (LISTEN moonshot_coins) when a coin with an image
-- arrives. Polling stays the source of truth: notifications sent while a listener is
-- disconnected are lost.
CREATE OR REPLACE FUNCTION public.moonshot_notify_coin()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
BEGIN
    IF NEW.image_url IS NOT NULL AND NEW.image_synced = false
       AND (TG_OP = 'INSERT' OR OLD.image_url IS DISTINCT FROM NEW.image_url) THEN
        PERFORM pg_notify('moonshot_coins', NEW.id::text);
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER coins_moonshot_notify
    AFTER INSERT OR UPDATE OF image_url ON public.coins
    FOR EACH ROW EXECUTE FUNCTION public.moonshot_notify_coin();

-- Only the service role may claim: anon and authenticated must not take coins.
DO $$
DECLARE
    fn text;
    r text;
BEGIN
    FOREACH fn IN ARRAY ARRAY[
        'public.moonshot_claim(text, integer, integer)',
        'public.moonshot_renew(text, text[], integer)',
        'public.moonshot_release(text, text[])']
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', fn);
        FOREACH r IN ARRAY ARRAY['anon', 'authenticated']
        LOOP
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
                EXECUTE format('REVOKE ALL ON FUNCTION %s FROM %I', fn, r);
            END IF;
        END LOOP;
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO service_role', fn);
        END IF;
    END LOOP;
END;
$$;

-- Make PostgREST see the new columns and functions now, not at its next reload.
NOTIFY pgrst, 'reload schema';
