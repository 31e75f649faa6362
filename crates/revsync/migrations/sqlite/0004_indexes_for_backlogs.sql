-- When the oldest pending intent became due, read from the index alone: the sink asks on
-- every poll, and a backlog of a million intents must not make that a scan of the table.
CREATE INDEX outbox_by_due ON outbox (status, next_attempt_us);

-- Which customer already claims a Salesforce record (the duplicate-rule check of every
-- write that found an existing record).
CREATE INDEX identities_by_account ON identities (account_id);
CREATE INDEX identities_by_contact ON identities (contact_id);
