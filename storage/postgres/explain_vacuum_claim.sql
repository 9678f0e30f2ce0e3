-- The claim the driver runs (published, the empty version), in a
-- transaction rolled back; included by explain_vacuum.sql, twice: the
-- claim of the 500 due rows (bound now()), and an idle poll (bound 30
-- minutes ago: the Succeeded rows' entries, an hour old, are before it,
-- the due rows after it). :from is the claim's floor (ClaimRequest.DueFrom,
-- see "Claims from a floor" in QUERY_PLANS.md): '-infinity' for a claim
-- from the start.
BEGIN;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
UPDATE gocap_xpvac.published SET lease_until = now() + interval '1 minute', lease_token = 8, status = 'Scheduled'
WHERE id IN (SELECT id FROM gocap_xpvac.published c
             WHERE status IN ('Scheduled', 'Delayed') AND next_attempt_at <= :bound AND next_attempt_at >= :from AND (lease_until IS NULL OR lease_until <= :bound)
               AND version = ''
               AND (c.ordering_key IS NULL OR NOT EXISTS (
                 SELECT 1 FROM gocap_xpvac.published p WHERE p.ordering_key = c.ordering_key AND p.version = c.version AND p.id < c.id
                   AND p.status <> 'Succeeded' AND (p.status <> 'Failed' OR true))
               AND NOT EXISTS (
                 SELECT 1 FROM gocap_xpvac.published p WHERE p.ordering_key = c.ordering_key AND p.version = c.version AND p.id > c.id
                   AND p.status <> 'Succeeded' AND p.lease_until > :bound))
             ORDER BY next_attempt_at LIMIT 500 FOR UPDATE SKIP LOCKED)
RETURNING id;
ROLLBACK;
