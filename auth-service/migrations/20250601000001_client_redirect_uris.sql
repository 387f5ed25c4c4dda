-- Clients of the authorization code flow: their registered redirect URIs and post-logout
-- redirect URIs (each list space-separated: a registered URI never contains whitespace), and
-- whether the client is 'public' (no secret: secret_hash is '', it proves itself with PKCE
-- alone) or 'confidential'. Existing rows are the service clients: confidential, no URIs.
ALTER TABLE clients ADD COLUMN redirect_uris TEXT NOT NULL DEFAULT '';
ALTER TABLE clients ADD COLUMN post_logout_redirect_uris TEXT NOT NULL DEFAULT '';
ALTER TABLE clients ADD COLUMN client_type TEXT NOT NULL DEFAULT 'confidential';
