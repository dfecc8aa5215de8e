-- Fewer index entries per claim (issue 14, item 6). No update of a ledger row is HOT
-- (every claim and outcome changes `status`, which the claim indexes' predicates read),
-- so each one adds an entry to every index whose predicate the new row version meets.
-- A 500-row claim added six per row; two of them went into indexes keyed by address or
-- Message-ID, at random places of large trees (at 1,000,000 rows, ~500 leaf pages each
-- per claim, most of them not in shared_buffers). Both indexes now hold only the rows
-- that are looked up by them:
--
-- * by Message-ID (a bounce names the message it answers): only rows that have one;
--   a row being claimed for its first attempt has none.
-- * by address: the bounce and hard-failure lookups ask for rows that were sent,
--   bounced or failed, so only rows in a final status. A row being claimed or waiting
--   is not in it. Listing the ledger filtered by address alone (an operator's query)
--   reads the table instead.
--
-- A claim now adds four entries per row (primary key, the unique key, `deliveries_leased`
-- and `deliveries_unfinished`), a fan-out four instead of six.
DROP INDEX deliveries_message_id;
CREATE INDEX deliveries_message_id ON deliveries (message_id) WHERE message_id IS NOT NULL;
DROP INDEX deliveries_recipient;
CREATE INDEX deliveries_recipient ON deliveries (recipient)
    WHERE status IN ('sent', 'bounced', 'failed', 'unconfirmed');
