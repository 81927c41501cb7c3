#!/usr/bin/env bash
# End-to-end check of provider.mjs with curl + python3 only:
# discovery, JWKS, /auth -> (redirects, cookie jar) -> REDIRECT_URI?code&state,
# token exchange with PKCE verifier + client credentials, id_token claims,
# userinfo. Runs `npm ci` first when node_modules is missing.
#
#   bash gateway/tests/oidc/verify.sh                      # client_secret_basic
#   TOKEN_ENDPOINT_AUTH_METHOD=client_secret_post bash gateway/tests/oidc/verify.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

if [ ! -d node_modules/oidc-provider ]; then
  t0=$(date +%s.%N)
  npm ci --no-audit --no-fund >&2
  echo "npm ci took $(python3 -c "print(round($(date +%s.%N)-$t0,2))")s" >&2
fi

work="$(mktemp -d)"
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    wait "$pid" || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

export CLIENT_ID="gateway-test"
export CLIENT_SECRET="gateway-test-secret-$RANDOM$RANDOM"
export REDIRECT_URI="http://127.0.0.1:9/auth/oidc/callback"   # never contacted
export TOKEN_ENDPOINT_AUTH_METHOD="${TOKEN_ENDPOINT_AUTH_METHOD:-client_secret_basic}"
export ACCOUNT_SUB="user-42"
export ACCOUNT_EMAIL="ada@example.test"
export ACCOUNT_EMAIL_VERIFIED="false"
export ACCOUNT_NAME="Ada Lovelace"
export PORT=0

fail() { echo "FAIL: $*" >&2; [ -f "$work/err" ] && sed 's/^/  provider: /' "$work/err" >&2; exit 1; }

# --- start, wait for the single stdout line -------------------------------
mkfifo "$work/out"
t0=$(date +%s.%N)
node provider.mjs >"$work/out" 2>"$work/err" &
pid=$!
exec 3<"$work/out"
IFS= read -r -t 20 line <&3 || fail "no 'listening' line within 20s"
t1=$(date +%s.%N)
[[ "$line" =~ ^listening\ (http://127\.0\.0\.1:[0-9]+)$ ]] || fail "unexpected stdout line: $line"
issuer="${BASH_REMATCH[1]}"
echo "provider up in $(python3 -c "print(round($t1-$t0,2))")s: $line"
# any further stdout would be a bug: drain it into a file to check at the end
cat <&3 >"$work/extra_stdout" &

# --- discovery + JWKS -----------------------------------------------------
curl -fsS "$issuer/.well-known/openid-configuration" >"$work/disc.json" || fail "discovery"
eval "$(python3 - "$work/disc.json" "$issuer" <<'PY'
import json, sys, shlex
d = json.load(open(sys.argv[1])); iss = sys.argv[2]
assert d["issuer"] == iss, (d["issuer"], iss)
assert "S256" in d["code_challenge_methods_supported"]
assert "RS256" in d["id_token_signing_alg_values_supported"]
for k in ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint"):
    print(f"{k}={shlex.quote(d[k])}")
PY
)" || fail "discovery document"
echo "discovery ok: auth=$authorization_endpoint token=$token_endpoint jwks=$jwks_uri"
curl -fsS "$jwks_uri" >"$work/jwks.json" || fail "jwks"
python3 - "$work/jwks.json" <<'PY' || fail "jwks content"
import json, sys
keys = json.load(open(sys.argv[1]))["keys"]
assert any(k["kty"] == "RSA" and k.get("alg") == "RS256" and "d" not in k for k in keys), keys
print("jwks ok:", [(k["kid"], k["kty"], k.get("alg")) for k in keys])
PY

# --- authorization request ------------------------------------------------
read -r verifier challenge state nonce < <(python3 - <<'PY'
import base64, hashlib, secrets
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
v = b64(secrets.token_bytes(32))
print(v, b64(hashlib.sha256(v.encode()).digest()), b64(secrets.token_bytes(16)), b64(secrets.token_bytes(16)))
PY
)
auth_url="$(python3 - "$authorization_endpoint" "$challenge" "$state" "$nonce" <<'PY'
import sys, os, urllib.parse
ep, ch, st, no = sys.argv[1:]
print(ep + "?" + urllib.parse.urlencode({
    "response_type": "code", "client_id": os.environ["CLIENT_ID"],
    "redirect_uri": os.environ["REDIRECT_URI"], "scope": "openid email profile",
    "state": st, "nonce": no, "code_challenge": ch, "code_challenge_method": "S256"}))
PY
)"

jar="$work/cookies.txt"
url="$auth_url"
hops=0
while :; do
  hops=$((hops + 1))
  [ "$hops" -le 10 ] || fail "more than 10 redirects"
  code=$(curl -sS -o "$work/body" -D "$work/headers" -b "$jar" -c "$jar" -w '%{http_code}' "$url")
  location=$(python3 - "$work/headers" <<'PY'
import sys
for l in open(sys.argv[1], encoding="latin-1"):
    if l.lower().startswith("location:"):
        print(l.split(":", 1)[1].strip()); break
PY
)
  echo "hop $hops: GET ${url%%\?*} -> $code ${location%%\?*}"
  case "$code" in 302|303) ;; *) echo "body:"; cat "$work/body"; echo; fail "expected a redirect at hop $hops, got $code";; esac
  [ -n "$location" ] || fail "redirect without Location"
  case "$location" in /*) location="$issuer$location";; esac
  if [[ "$location" == "$REDIRECT_URI"* ]]; then break; fi
  url="$location"
done
echo "callback reached after $hops requests to the provider"

read -r got_code got_state got_iss < <(python3 - "$location" <<'PY'
import sys, urllib.parse
q = urllib.parse.parse_qs(urllib.parse.urlsplit(sys.argv[1]).query)
if "error" in q: sys.exit("authorization error: %s %s" % (q["error"], q.get("error_description")))
print(q["code"][0], q["state"][0], q.get("iss", ["-"])[0])
PY
) || fail "callback had no code"
[ "$got_state" = "$state" ] || fail "state mismatch: $got_state != $state"
[ "$got_iss" = "$issuer" ] || fail "iss mismatch: $got_iss != $issuer"
echo "code ok, state ok, iss=$got_iss"

# --- token request --------------------------------------------------------
form=(--data-urlencode grant_type=authorization_code
      --data-urlencode "code=$got_code"
      --data-urlencode "redirect_uri=$REDIRECT_URI"
      --data-urlencode "code_verifier=$verifier")
if [ "$TOKEN_ENDPOINT_AUTH_METHOD" = client_secret_post ]; then
  form+=(--data-urlencode "client_id=$CLIENT_ID" --data-urlencode "client_secret=$CLIENT_SECRET")
else
  # RFC 6749 2.3.1: form-urlencode id and secret before Basic (no-op for these values)
  form+=(-u "$CLIENT_ID:$CLIENT_SECRET")
fi
tcode=$(curl -sS -o "$work/token.json" -w '%{http_code}' "${form[@]}" "$token_endpoint")
[ "$tcode" = 200 ] || { cat "$work/token.json"; echo; fail "token endpoint answered $tcode"; }

python3 - "$work/token.json" "$issuer" "$nonce" > "$work/at" <<'PY' || fail "id_token checks"
import base64, json, os, sys, time
tok = json.load(open(sys.argv[1])); iss, nonce = sys.argv[2], sys.argv[3]
d = lambda s: json.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
h, p, _sig = tok["id_token"].split(".")
hdr, claims = d(h), d(p)
print("token response keys:", sorted(tok), file=sys.stderr)
print("id_token header:", hdr, file=sys.stderr)
print("id_token payload:", claims, file=sys.stderr)
assert tok["token_type"].lower() == "bearer"
assert hdr["alg"] == "RS256", hdr
assert claims["iss"] == iss
assert claims["aud"] == os.environ["CLIENT_ID"]
assert claims["sub"] == os.environ["ACCOUNT_SUB"]
assert claims["nonce"] == nonce
assert claims["email"] == os.environ["ACCOUNT_EMAIL"]
assert claims["email_verified"] is (os.environ["ACCOUNT_EMAIL_VERIFIED"] == "true")
assert claims["name"] == os.environ["ACCOUNT_NAME"]
assert claims["exp"] > time.time()
print(tok["access_token"])
PY
echo "id_token ok"

# --- userinfo -------------------------------------------------------------
curl -fsS -H "Authorization: Bearer $(cat "$work/at")" "$userinfo_endpoint" >"$work/ui.json" || fail "userinfo"
python3 - "$work/ui.json" <<'PY' || fail "userinfo content"
import json, os, sys
u = json.load(open(sys.argv[1]))
assert u["sub"] == os.environ["ACCOUNT_SUB"] and u["email"] == os.environ["ACCOUNT_EMAIL"], u
print("userinfo ok:", u)
PY

# a code is single use (reuse also revokes the tokens it gave, so this goes after userinfo)
tcode=$(curl -sS -o "$work/token2.json" -w '%{http_code}' "${form[@]}" "$token_endpoint")
[ "$tcode" = 400 ] || fail "reusing the code answered $tcode"
echo "code reuse rejected: $(cat "$work/token2.json")"

# --- clean stop -----------------------------------------------------------
kill -TERM "$pid"
rc=0; wait "$pid" || rc=$?
pid=""
[ "$rc" = 0 ] || fail "provider exited $rc on SIGTERM"
wait || true
[ ! -s "$work/extra_stdout" ] || fail "provider printed more on stdout: $(cat "$work/extra_stdout")"
echo "provider stopped cleanly on SIGTERM"
echo "1 passed, 0 failed"
