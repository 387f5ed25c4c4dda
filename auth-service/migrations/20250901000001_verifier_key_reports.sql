-- What each verifier reported it holds (`SessionService.ReportKeys`): the kids of its key set,
-- space separated, one row per (client of its token, instance). Shared by every replica, so a
-- promotion run by one replica waits for verifiers that report to another. Times in Unix
-- milliseconds; a row whose `expires_at_ms` has passed no longer counts (its verifier left), and
-- the replicas delete such rows as they go.
CREATE TABLE verifier_key_reports (
    client_id      TEXT NOT NULL,
    instance       TEXT NOT NULL,
    kids           TEXT NOT NULL,
    reported_at_ms BIGINT NOT NULL,
    expires_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (client_id, instance)
);
