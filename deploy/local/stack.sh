#!/usr/bin/env bash
# Builds and runs the whole platform on this machine with the embedded defaults: SQLite files
# and signing keys under ./data, no Redis. Seeds a demo admin, a demo user and the clients on
# first run, prints the web app's URL and how to call the API, and stops all three services at
# once on Ctrl-C.
#
# Environment (all optional):
#   DEMO_ADMIN_PASSWORD, DEMO_USER_PASSWORD  passwords for the seeded users (first run only;
#                                            generated and kept in data/demo-credentials.env otherwise)
#   CARGO_PROFILE                            dev (default) or release
#   AUTH_MODE                                stateless (default), stateful or hybrid: how the gateway
#                                            and orders-service check sessions (docs/MODES.md)
set -euo pipefail
cd "$(dirname "$0")/../.."

profile=${CARGO_PROFILE:-dev}
target_dir=target/$([ "$profile" = dev ] && echo debug || echo "$profile")

echo "==> Building the services ($profile profile)"
cargo build --locked --profile "$profile" -p auth-service -p orders-service -p gateway

auth=$target_dir/auth-service
orders=$target_dir/orders-service
gateway=$target_dir/gateway

gw=http://localhost:8080
mkdir -p data
credentials=data/demo-credentials.env

# add_client ID [client add flags...]: registers a client and prints its secret (the CLI's note
# for a person, on stderr, is shown only if it fails).
add_client() {
  local note secret
  note=$(mktemp)
  if ! secret=$("$auth" client add --id "$@" 2>"$note"); then
    cat "$note" >&2; rm -f "$note"; exit 1
  fi
  rm -f "$note"
  printf '%s' "$secret"
}

if [ ! -f "$credentials" ]; then
  echo "==> Seeding demo users and clients (first run)"
  random_password() { head -c 18 /dev/urandom | base64 | tr '+/' '-_'; }
  admin_password=${DEMO_ADMIN_PASSWORD:-$(random_password)}
  user_password=${DEMO_USER_PASSWORD:-$(random_password)}
  printf '%s\n' "$admin_password" | "$auth" user add --username admin \
    --roles admin,user --scopes "orders:read orders:write users:admin keys:admin" --password-stdin
  printf '%s\n' "$user_password" | "$auth" user add --username demo \
    --roles user --scopes "orders:read orders:write" --password-stdin
  client_secret=$(add_client demo-service --scopes "orders:read")
  # The verifiers' own clients, for the stateful and hybrid modes.
  gateway_secret=$(add_client gateway --scopes "sessions:check")
  orders_secret=$(add_client orders-service --scopes "sessions:check")
  umask 077
  cat > "$credentials" <<CREDENTIALS
DEMO_ADMIN_PASSWORD='$admin_password'
DEMO_USER_PASSWORD='$user_password'
DEMO_CLIENT_SECRET='$client_secret'
GATEWAY_CLIENT_SECRET='$gateway_secret'
ORDERS_CLIENT_SECRET='$orders_secret'
CREDENTIALS
  echo "    users admin and demo, clients demo-service, gateway and orders-service;"
  echo "    passwords and client secrets in $credentials"
fi
# The web app's client (the gateway signs browsers in with it); also added to a data directory
# seeded before the web app existed.
if ! grep -q '^WEB_CLIENT_SECRET=' "$credentials"; then
  echo "==> Registering the web app's client (web)"
  web_secret=$(add_client web --redirect-uri "$gw/callback" --post-logout-redirect-uri "$gw/" \
    --scopes "openid orders:read orders:write")
  (umask 077; echo "WEB_CLIENT_SECRET='$web_secret'" >> "$credentials")
  echo "    its secret is in $credentials"
fi
# shellcheck disable=SC1090
source "$credentials"

pids=()
stop() {
  trap - INT TERM EXIT
  if [ ${#pids[@]} -gt 0 ]; then
    echo
    echo "==> Stopping the services"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

start() { # start NAME BINARY [VAR=VALUE...]
  local name=$1 binary=$2
  shift 2
  env "$@" "$binary" > >(sed -u "s/^/[$name] /") 2>&1 &
  pids+=($!)
}

wait_ready() { # wait_ready NAME URL
  local name=$1 url=$2
  for _ in $(seq 1 100); do
    if curl -fsS "$url" >/dev/null 2>&1; then return 0; fi
    for pid in "${pids[@]}"; do
      kill -0 "$pid" 2>/dev/null || { echo "$name: a service exited; see its log lines above" >&2; exit 1; }
    done
    sleep 0.2
  done
  echo "$name did not become ready at $url" >&2
  exit 1
}

echo "==> Starting auth-service, orders-service and gateway"
# One public origin: browsers and frontends talk to the gateway only, so the issuer names it (the
# discovery document, the sign-in page, the iss of every token) and forwards through it. No
# readiness-first shutdown delay here: Ctrl-C stops at once (production keeps the default).
export AUTH_ISSUER=$gw
export AUTH_SHUTDOWN_DELAY=0s ORDERS_SHUTDOWN_DELAY=0s GATEWAY_SHUTDOWN_DELAY=0s
start auth "$auth"
wait_ready auth-service http://127.0.0.1:8081/readyz
export AUTH_MODE=${AUTH_MODE:-stateless}
start orders "$orders" AUTH_CLIENT_ID=orders-service "AUTH_CLIENT_SECRET=$ORDERS_CLIENT_SECRET"
start gateway "$gateway" AUTH_CLIENT_ID=gateway "AUTH_CLIENT_SECRET=$GATEWAY_CLIENT_SECRET" \
  "GATEWAY_PUBLIC_URL=$gw" GATEWAY_CLIENT_ID=web "GATEWAY_CLIENT_SECRET=$WEB_CLIENT_SECRET"
wait_ready orders-service http://127.0.0.1:9092/readyz
wait_ready gateway http://127.0.0.1:8080/readyz

cat <<USAGE

The platform is up (verifiers in AUTH_MODE=$AUTH_MODE). Frontends talk to the gateway at $gw only.

  Open $gw/ in a browser and sign in as demo / $DEMO_USER_PASSWORD
  (or admin / $DEMO_ADMIN_PASSWORD, who sees every order).

Passwords and client secrets: $credentials.
Service client: demo-service / $DEMO_CLIENT_SECRET (scope orders:read).

Try it in another terminal:

  # Log in as the demo user and keep the access token
  TOKEN=\$(curl -s $gw/oauth/token -d grant_type=password -d username=demo \\
      --data-urlencode 'password=$DEMO_USER_PASSWORD' | sed -E 's/.*"access_token":"([^"]+)".*/\1/')

  # Create an order, then list your orders
  curl -s $gw/v1/orders -H "Authorization: Bearer \$TOKEN" \\
      -H 'Content-Type: application/json' -d '{"item":"coffee beans","quantity":2}'
  curl -s $gw/v1/orders -H "Authorization: Bearer \$TOKEN"

  # A token limited to orders:read cannot create orders: 403 insufficient_scope
  READ_ONLY=\$(curl -s $gw/oauth/token -d grant_type=password -d username=demo \\
      --data-urlencode 'password=$DEMO_USER_PASSWORD' -d scope=orders:read \\
      | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
  curl -si $gw/v1/orders -H "Authorization: Bearer \$READ_ONLY" \\
      -H 'Content-Type: application/json' -d '{"item":"tea","quantity":1}'

  # A service token (client credentials)
  curl -s $gw/oauth/token -u 'demo-service:$DEMO_CLIENT_SECRET' -d grant_type=client_credentials

  # The issuer's public keys
  curl -s $gw/.well-known/jwks.json

  # Log out: in stateful or hybrid mode the token is refused right after (401); in stateless
  # mode it keeps working until it expires
  curl -s -o /dev/null -w 'logout: %{http_code}\\n' -X POST $gw/v1/logout -H "Authorization: Bearer \$TOKEN"
  curl -si $gw/v1/orders -H "Authorization: Bearer \$TOKEN"

Press Ctrl-C to stop all three services.
USAGE

wait -n "${pids[@]}" || true
echo "A service stopped unexpectedly; stopping the others." >&2
exit 1
