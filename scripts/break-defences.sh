#!/usr/bin/env bash
# Breaks each defence of docs/SECURITY.md once and checks that its tests notice.
#
#   scripts/break-defences.sh              every mutation (about an hour on 2 cores)
#   scripts/break-defences.sh 7 22b        only these (a class number selects all its mutations)
#   scripts/break-defences.sh --list       what each mutation does, and the tests it runs
#   scripts/break-defences.sh --check      only check that every mutation still applies
#
# For each class of SECURITY-TESTS.md (1-15, 22-24, 34-35) one small source mutation switches
# the defence off (the algorithm pin admits `none`, the signature is not checked, `exp` is
# ignored, the login throttle never refuses, ...). The script applies it, builds and runs only
# the test binaries that guard that class, records whether they FAIL (they must), and restores
# the file byte for byte before the next mutation. A mutation whose tests still pass is a
# defence that no test holds up: the summary marks it NOT CAUGHT and the script exits 1.
#
# Safety: the original of every mutated file is copied first and restored by a trap on EXIT,
# INT and TERM, so the tree is never left mutated (Ctrl-C included). Nothing here uses git:
# other people may be editing the tree. If a mutated file was changed by someone else while the
# mutation was applied, it is not overwritten: the mutation is reverted textually, or the file
# is left alone with an error naming it. While a mutation is applied, anything that builds from
# this tree builds the broken defence: run it on a copy of the tree when others share it, e.g.
#
#   rsync -a --exclude target ./ /tmp/break-tree/ && cd /tmp/break-tree &&
#     CARGO_TARGET_DIR=/tmp/break-target scripts/break-defences.sh
#
# Not part of CI (it rebuilds the workspace crates once per mutation). Logs and the summary
# (results.md) go to $BREAK_LOG_DIR (default target/break-defences). PostgreSQL and Redis are not
# used: TEST_DATABASE_URL and TEST_REDIS_URL are unset. Each cargo invocation is limited to
# $BREAK_TEST_TIMEOUT seconds (default 1200); a timeout counts as the tests failing.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
LOG_DIR=${BREAK_LOG_DIR:-${CARGO_TARGET_DIR:-target}/break-defences}
TIMEOUT=${BREAK_TEST_TIMEOUT:-1200}
unset TEST_DATABASE_URL TEST_REDIS_URL
export CARGO_TERM_COLOR=never

# ---------------------------------------------------------------------------------------------
# Mutations. Each is a function m_<id> that calls `replace_once FILE FROM TO` (a literal,
# multi-line capable replacement that must match exactly once) for every edit it makes, and a
# line in MUTATIONS: id, class, the tests that must fail (crate:test-target, `lib` for the unit
# tests), and what the mutation breaks.
# ---------------------------------------------------------------------------------------------
TOKEN_SUITES="authn:attacks system-tests:attacks orders-service:attacks"
MUTATIONS=(
  "1|1|$TOKEN_SUITES|the algorithm allow-list also admits \`none\`"
  "2|2|$TOKEN_SUITES|the signature is not checked"
  "3|3|$TOKEN_SUITES|\`HS256\` passes the algorithm pin (the key decides)"
  "4|4|$TOKEN_SUITES|\`alg\` compared case-insensitively and trimmed"
  "5|5|$TOKEN_SUITES|a \`jwk\` in the header is the verification key"
  "6|6|$TOKEN_SUITES|no emptiness or length limit on \`kid\`"
  "7|7|authn:jwks system-tests:attacks|every unknown \`kid\` fetches the JWKS (no single flight, no cool-down)"
  "8|8|$TOKEN_SUITES|\`exp\` is not checked"
  "9|9|$TOKEN_SUITES|\`iss\` compared by prefix"
  "10|10|$TOKEN_SUITES|\`typ\` is not checked"
  "11|11|$TOKEN_SUITES|\`crit\` is ignored"
  "12|12|$TOKEN_SUITES|duplicate JSON members allowed (the last one wins)"
  "13|13|$TOKEN_SUITES|lenient base64url (padding, non-zero trailing bits)"
  "14|14|$TOKEN_SUITES|no length limit before a token is parsed"
  "15|15|system-tests:attacks|of two \`Authorization\` headers the first wins"
  "22a|22|auth-service:token|an unknown username skips the dummy Argon2 hash (answers faster)"
  "22b|22|auth-service:throttle|the login throttle never refuses"
  "22c|22|auth-service:client_auth_throttle|client authentication is not throttled (every bad secret runs Argon2)"
  "22d|22|auth-service:argon2_queue auth-service:lib|the Argon2 queue is unbounded (waiters queue until the request times out)"
  "22e|22|auth-service:client_auth_throttle|the password grant authenticates the client before the login throttle"
  "22f|22|auth-service:client_auth_throttle auth-service:lib|recognised addresses are ignored (failures elsewhere lock a client out)"
  "22g|22|auth-service:lib|suspect callers (failures on record, back before Retry-After) wait in the Argon2 queue like clean ones"
  "23|23|auth-service:token|a repeated form parameter is accepted (the last one wins)"
  "24|24|auth-service:token|refresh tokens are stored in clear (no SHA-256)"
  "34|34|auth-service:admin_users|administration needs the \`admin\` role only (no admin scope)"
  "35a|35|system-tests:claims|\`hybrid\` verifiers ignore \`UserChanged\` events"
  "35b|35|authn:lib|a token issued in the second of its user's change passes a \`stateful\` check"
  "35c|35|system-tests:claims auth-service:admin_users|\`CheckSession\` never reports a user's change"
)

m_1() {
  replace_once authn/src/verifier.rs \
    '        if header.alg != ALGORITHM {' \
    '        if header.alg != ALGORITHM && !header.alg.eq_ignore_ascii_case("none") {'
}

m_2() {
  replace_once authn/src/verifier.rs \
    '        if !key.verify(jws.signing_input.as_bytes(), &signature) {' \
    '        if false && !key.verify(jws.signing_input.as_bytes(), &signature) {'
}

m_3() {
  replace_once authn/src/verifier.rs \
    '        if header.alg != ALGORITHM {' \
    '        if header.alg != ALGORITHM && header.alg != "HS256" {'
}

m_4() {
  replace_once authn/src/verifier.rs \
    '        if header.alg != ALGORITHM {' \
    '        if !header.alg.trim().eq_ignore_ascii_case(ALGORITHM) {'
}

m_5() {
  replace_once authn/src/jws.rs \
    '    pub kid: Option<String>,
' \
    '    pub kid: Option<String>,
    #[serde(default)]
    pub jwk: Option<crate::jwk::Jwk>,
'
  replace_once authn/src/verifier.rs \
    '        let key = inner.keys.key(&kid).await?;' \
    '        let key = match jws.header()?.jwk {
            Some(jwk) => Arc::new(
                VerifyingKey::from_jwk(&jwk).map_err(|_| RejectReason::BadSignature)?,
            ),
            None => inner.keys.key(&kid).await?,
        };'
}

m_6() {
  replace_once authn/src/verifier.rs \
    '            Some(kid) if !kid.is_empty() && kid.len() <= MAX_KID_LEN => Ok(kid),' \
    '            Some(kid) => Ok(kid),'
}

m_7() {
  replace_once authn/src/jwks.rs \
    '        self.inner
            .last_fetch
            .get_with((), self.fetch_and_install())
            .await
            .is_ok()' \
    '        self.fetch_and_install().await.is_ok()'
}

m_8() {
  replace_once authn/src/verifier.rs \
    '        if now >= claims.exp.saturating_add(leeway) {' \
    '        if false && now >= claims.exp.saturating_add(leeway) {'
}

m_9() {
  replace_once authn/src/verifier.rs \
    '        if claims.iss != self.issuer {' \
    '        if !claims.iss.starts_with(&self.issuer) {'
}

m_10() {
  replace_once authn/src/verifier.rs \
    '        if !typ.eq_ignore_ascii_case(ACCESS_TOKEN_TYPE) {' \
    '        if false && !typ.eq_ignore_ascii_case(ACCESS_TOKEN_TYPE) {'
}

m_11() {
  replace_once authn/src/verifier.rs \
    '        if header.crit {' \
    '        if false && header.crit {'
}

m_12() {
  replace_once authn/src/jws.rs \
    '                    if names.contains(&name) {' \
    '                    if false && names.contains(&name) {'
}

m_13() {
  replace_once authn/src/base64url.rs \
    '    URL_SAFE_NO_PAD.decode(input)
}' \
    '    base64::engine::GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    )
    .decode(input)
}'
}

m_14() {
  replace_once authn/src/jws.rs \
    '        if token.len() > MAX_TOKEN_LEN {
            return Err(RejectReason::TooLarge);' \
    '        if false && token.len() > MAX_TOKEN_LEN {
            return Err(RejectReason::TooLarge);'
}

m_15() {
  replace_once authn/src/bearer.rs \
    '        (Some(_), Some(_)) => return Err(RejectReason::Ambiguous),
    };
    let mut from_cookie' \
    '        (Some(value), Some(_)) => Some(bearer_token(value)?),
    };
    let mut from_cookie'
}

m_34() {
  replace_once auth-service/src/http/admin.rs \
    '    principal.require(scope)?;
    Ok(())' \
    '    let _ = scope;
    Ok(())'
}

m_35a() {
  replace_once authn/src/revocation.rs \
    'Some(Target::UserChanged(user)) => revoke(&inner.changed, &user.user_id, entry),' \
    'Some(Target::UserChanged(_)) => {}'
}

m_35b() {
  replace_once authn/src/session/mod.rs \
    'Some(changed_at) if claims.iat <= changed_at =>' \
    'Some(changed_at) if claims.iat < changed_at =>'
}

m_35c() {
  replace_once auth-service/src/grpc.rs \
    'user_changed_at: user_changed_at.unwrap_or(0),' \
    'user_changed_at: user_changed_at.map_or(0, |_| 0),'
}

m_22a() {
  replace_once auth-service/src/passwords.rs \
    '        let known = stored.is_some();
' \
    '        let known = stored.is_some();
        if !known {
            return Ok(false);
        }
'
}

m_22b() {
  replace_once auth-service/src/throttle/memory.rs \
    '        self.expire(policy, now);
        if let Some(until) = self.locked_until {' \
    '        self.expire(policy, now);
        if true {
            self.pending += 1;
            return Ok(());
        }
        if let Some(until) = self.locked_until {'
}

m_22c() {
  replace_once auth-service/src/throttle/mod.rs \
    '        if self.subject.is_off() && self.address.is_off() {' \
    '        if self.kind == Kind::ClientAuth || (self.subject.is_off() && self.address.is_off()) {'
}

m_22d() {
  replace_once auth-service/src/passwords.rs \
    '            Priority::Clean => self.max_waiting,' \
    '            Priority::Clean => usize::MAX,'
}

m_22g() {
  replace_once auth-service/src/passwords.rs \
    '            Priority::Suspect => 0,' \
    '            Priority::Suspect => self.max_waiting,'
}

m_22e() {
  replace_once auth-service/src/http/token.rs \
    '            let attempt = grants::password::reserve(state, username, client_ip).await?;
            let client = authenticate_client(state, &parts, &credentials).await?;' \
    '            let client = authenticate_client(state, &parts, &credentials).await?;
            let attempt = grants::password::reserve(state, username, client_ip).await?;'
}

m_22f() {
  replace_once auth-service/src/throttle/mod.rs \
    '        if self.recognises
            && let Some(ip) = address
            && self' \
    '        if false
            && self.recognises
            && let Some(ip) = address
            && self'
}

m_23() {
  replace_once auth-service/src/http/form.rs \
    '            if params.contains_key(&name) {' \
    '            if false && params.contains_key(&name) {'
}

m_24() {
  replace_once auth-service/src/crypto.rs \
    '    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, token.as_bytes()))' \
    '    token.to_owned()'
}

# ---------------------------------------------------------------------------------------------
# Backup, mutation and restore.
# ---------------------------------------------------------------------------------------------
BACKUP_DIR=$(mktemp -d "${TMPDIR:-/tmp}/break-defences.XXXXXX")
declare -a TOUCHED=()       # files mutated by the current mutation
declare -A MUTATED_SUM=()   # file -> sha256 of its mutated content
declare -A FROM_TEXT=()     # "file#n" -> text replaced, to revert by hand if needed
declare -A TO_TEXT=()
declare -A EDITS=()         # file -> number of edits
RESTORE_FAILED=0

sum() { sha256sum "$1" | cut -d' ' -f1; }
backup_path() { printf '%s/%s' "$BACKUP_DIR" "${1//\//__}"; }

# replace_once FILE FROM TO: replaces the only occurrence of the literal text FROM with TO.
replace_once() {
  local file=$1 from=$2 to=$3
  local count
  count=$(FROM=$from perl -0777 -ne 'my $n = () = /\Q$ENV{FROM}\E/g; print $n' "$file") || return 1
  if [[ $count != 1 ]]; then
    echo "mutation does not apply: expected one match in $file, found $count" >&2
    return 1
  fi
  if [[ -z ${EDITS[$file]:-} ]]; then
    cp -p "$file" "$(backup_path "$file")"
    TOUCHED+=("$file")
    EDITS[$file]=0
  fi
  local n=${EDITS[$file]}
  FROM_TEXT["$file#$n"]=$from
  TO_TEXT["$file#$n"]=$to
  EDITS[$file]=$((n + 1))
  FROM=$from TO=$to perl -0777 -i -pe 's/\Q$ENV{FROM}\E/$ENV{TO}/' "$file" || return 1
  MUTATED_SUM[$file]=$(sum "$file")
}

# Puts every touched file back: the backup when the file is as the mutation left it, else the
# reverse replacements (someone else edited it meanwhile), else an error naming it.
restore_all() {
  local file
  for file in "${TOUCHED[@]}"; do
    local backup
    backup=$(backup_path "$file")
    if [[ ! -e $file || $(sum "$file") == "${MUTATED_SUM[$file]:-none}" ]]; then
      cat "$backup" > "$file"
    elif cmp -s "$file" "$backup"; then
      :
    else
      local n ok=1
      for ((n = ${EDITS[$file]} - 1; n >= 0; n--)); do
        local to=${TO_TEXT["$file#$n"]} from=${FROM_TEXT["$file#$n"]}
        if [[ $(TO=$to perl -0777 -ne 'my $n = () = /\Q$ENV{TO}\E/g; print $n' "$file") == 1 ]]; then
          FROM=$from TO=$to perl -0777 -i -pe 's/\Q$ENV{TO}\E/$ENV{FROM}/' "$file"
        else
          ok=0
        fi
      done
      if ((ok)); then
        echo "warning: $file changed while mutated; the mutation was reverted in place" >&2
      else
        echo "ERROR: $file changed while mutated and the mutation could not be reverted;" \
          "its original is $backup" >&2
        RESTORE_FAILED=1
        continue
      fi
    fi
  done
  TOUCHED=()
  MUTATED_SUM=()
  FROM_TEXT=()
  TO_TEXT=()
  EDITS=()
}

on_exit() {
  local status=$?
  restore_all
  if ((RESTORE_FAILED)); then
    echo "backups kept in $BACKUP_DIR" >&2
    exit 3
  fi
  rm -rf "$BACKUP_DIR"
  exit "$status"
}
trap on_exit EXIT
trap 'echo "interrupted: restoring" >&2; exit 130' INT TERM HUP

# ---------------------------------------------------------------------------------------------
# Tests.
# ---------------------------------------------------------------------------------------------
# cargo_args SUITE: the cargo arguments of crate:target.
cargo_args() {
  local crate=${1%%:*} target=${1#*:}
  if [[ $target == lib ]]; then
    echo "-p $crate --lib"
  else
    echo "-p $crate --test $target"
  fi
}

# run_suite SUITE LOG: builds, then runs one test binary. Prints pass, fail, timeout or build.
run_suite() {
  local suite=$1 log=$2
  # shellcheck disable=SC2046
  if ! timeout "$TIMEOUT" cargo test --locked $(cargo_args "$suite") --no-run >"$log" 2>&1; then
    echo build
    return
  fi
  # shellcheck disable=SC2046
  timeout "$TIMEOUT" cargo test --locked $(cargo_args "$suite") >>"$log" 2>&1
  case $? in
    0) echo pass ;;
    124) echo timeout ;;
    *) echo fail ;;
  esac
}

# failed_tests LOG: the names of the tests that failed, comma-separated.
failed_tests() {
  sed -n 's/^test \(.*\) \.\.\. FAILED$/\1/p' "$1" | sort -u | paste -sd, - | sed 's/,/, /g'
}

# ---------------------------------------------------------------------------------------------
# Main.
# ---------------------------------------------------------------------------------------------
field() { local IFS='|'; local -a f; read -r -a f <<<"$1"; echo "${f[$2]}"; }
join() { local sep=$1 out="" item; shift; for item in "$@"; do out+="${out:+$sep}$item"; done; echo "$out"; }

selected=()
mode=run
for arg in "$@"; do
  case $arg in
    --list) mode=list ;;
    --check) mode=check ;;
    -h | --help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) selected+=("$arg") ;;
  esac
done

chosen=()
for m in "${MUTATIONS[@]}"; do
  id=$(field "$m" 0)
  class=$(field "$m" 1)
  if ((${#selected[@]} == 0)); then
    chosen+=("$m")
    continue
  fi
  for s in "${selected[@]}"; do
    if [[ $s == "$id" || $s == "$class" ]]; then
      chosen+=("$m")
      break
    fi
  done
done
if ((${#chosen[@]} == 0)); then
  echo "no mutation matches: ${selected[*]}" >&2
  exit 2
fi

if [[ $mode == list ]]; then
  for m in "${chosen[@]}"; do
    printf '%-4s class %-3s %s\n      tests: %s\n' "$(field "$m" 0)" "$(field "$m" 1)" \
      "$(field "$m" 3)" "$(field "$m" 2)"
  done
  exit 0
fi

if [[ $mode == check ]]; then
  broken=0
  for m in "${chosen[@]}"; do
    id=$(field "$m" 0)
    if "m_$id"; then
      echo "$id: applies"
    else
      echo "$id: DOES NOT APPLY"
      broken=1
    fi
    restore_all
  done
  exit "$broken"
fi

mkdir -p "$LOG_DIR"
echo "logs in $LOG_DIR"

# Every suite must pass before anything is broken, or a failure would prove nothing.
declare -A SUITES=()
for m in "${chosen[@]}"; do
  for suite in $(field "$m" 2); do SUITES[$suite]=1; done
done
for suite in $(printf '%s\n' "${!SUITES[@]}" | sort); do
  log="$LOG_DIR/baseline.${suite/:/.}.log"
  printf 'baseline %-28s ' "$suite"
  outcome=$(run_suite "$suite" "$log")
  echo "$outcome"
  if [[ $outcome != pass ]]; then
    echo "the unmutated tree does not pass $suite (see $log): fix that first" >&2
    exit 2
  fi
done

results=()
uncaught=0
for m in "${chosen[@]}"; do
  id=$(field "$m" 0)
  class=$(field "$m" 1)
  what=$(field "$m" 3)
  echo "== mutation $id (class $class): $what"
  if ! "m_$id"; then
    restore_all
    results+=("| $class | $id | $what | mutation does not apply | |")
    uncaught=1
    continue
  fi
  for f in "${TOUCHED[@]}"; do
    diff -u --label "a/$f" --label "b/$f" "$(backup_path "$f")" "$f"
  done >"$LOG_DIR/mutation-$id.diff"
  caught=()
  passed=()
  broken_build=0
  for suite in $(field "$m" 2); do
    log="$LOG_DIR/mutation-$id.${suite/:/.}.log"
    outcome=$(run_suite "$suite" "$log")
    printf '   %-28s %s\n' "$suite" "$outcome"
    case $outcome in
      fail) caught+=("\`$suite\` ($(failed_tests "$log"))") ;;
      timeout) caught+=("\`$suite\` (timed out)") ;;
      pass) passed+=("\`$suite\`") ;;
      build) broken_build=1 ;;
    esac
  done
  restore_all
  if ((broken_build)); then
    verdict="mutation does not build (see $LOG_DIR/mutation-$id.*.log)"
    uncaught=1
  elif ((${#caught[@]} == 0)); then
    verdict="NOT CAUGHT"
    uncaught=1
  else
    verdict="caught"
  fi
  cell=$(join '; ' "${caught[@]}")
  if ((${#passed[@]})); then cell+="${cell:+; }still passing: $(join ', ' "${passed[@]}")"; fi
  results+=("| $class | $id | $what | $verdict | $cell |")
done

{
  echo "Break-the-defence run of $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "| class | mutation | what is broken | result | tests that caught it |"
  echo "| --- | --- | --- | --- | --- |"
  printf '%s\n' "${results[@]}"
} | tee "$LOG_DIR/results.md"
exit "$uncaught"
