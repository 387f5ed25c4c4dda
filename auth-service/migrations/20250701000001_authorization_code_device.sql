-- The browser that approved an authorization code (src/oidc/codes.rs): its User-Agent and
-- address at sign-in, recorded with the session the code starts. The token request comes from
-- the client's backend (the gateway), whose User-Agent and address say nothing of the device.
ALTER TABLE authorization_codes ADD COLUMN user_agent TEXT;
ALTER TABLE authorization_codes ADD COLUMN client_ip TEXT;
