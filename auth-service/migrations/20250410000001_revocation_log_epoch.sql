-- The identity of the revocation log (`epoch`): a random id the first issuer to start on the
-- database writes (when it is NULL), and that an issuer replaces when it finds the log went back
-- under it (a restore from a backup, a failover that lost the last writes). Heartbeats carry it,
-- so a `hybrid` verifier following another epoch resets its position instead of ignoring events
-- numbered at or below it. A copy of the database carries the same epoch as the original: the
-- issuers detect a restore from the events themselves too (see sessions/revocation.rs).
ALTER TABLE revocation_sequence ADD COLUMN epoch TEXT;
