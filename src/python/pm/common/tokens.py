"""JWT verification for every service: asymmetric keys only, keys from a JWKS that is cached.

Only RS256 and EdDSA are accepted; `alg: none`, HMAC algorithms (and with them the classic "HS256 signed
with the public key" confusion), tokens without a known `kid` and tokens whose `alg` does not fit the key
their `kid` names are refused before any key is used.

Services check tokens on the event loop (Connexion's security layer awaits `bearer_info`); a check that
needs the key set fetched again runs in a worker thread instead, so a slow auth service never stalls them.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import re
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt import PyJWK

from pm.common.threads import ThreadWorker

if TYPE_CHECKING:
    from pm.common.tls import ClientTls

log = logging.getLogger(__name__)

ALLOWED_ALGORITHMS = ("RS256", "EdDSA")
REQUIRED_CLAIMS = ["exp", "iat", "iss", "sub", "jti"]
ROLES = ("ADMIN", "USER")
# The key types each accepted algorithm verifies with: PyJWT fails with a TypeError, not a token error,
# when given another.
KEY_TYPES: dict[str, tuple[type, ...]] = {
    "RS256": (RSAPublicKey,),
    "EdDSA": (Ed25519PublicKey, Ed448PublicKey),
}
# Checks that wait for a JWKS fetch run here: their own threads, so that a slow auth service cannot take
# the threads health checks and handlers need.
KEY_FETCH_EXECUTOR = ThreadPoolExecutor(max_workers=4, thread_name_prefix="jwks")


class InvalidToken(Exception):
    """The token cannot be trusted; the message says why (safe to log, contains no token)."""


class FetchNeeded(Exception):
    """The key cannot be known without fetching the key set again (raised only when fetching is not allowed)."""


class KeySource(Protocol):
    def key_for(self, kid: str, *, fetch: bool = True) -> Any | None:
        """The public key for `kid`, or None if unknown.

        With `fetch=False` it never waits on the network: it raises FetchNeeded where it would have.
        """


class StaticKeys:
    """Keys known up front: `{kid: public key}` (the auth service itself, tests)."""

    def __init__(self, keys: Mapping[str, Any]) -> None:
        self._keys = dict(keys)

    def key_for(self, kid: str, *, fetch: bool = True) -> Any | None:
        return self._keys.get(kid)


@dataclass(eq=False)
class JwksKeys:
    """Public keys fetched from a JWKS URL, cached for `ttl`, refetched on an unknown `kid`.

    Refetches are throttled (`min_refresh_interval`) so that tokens with made-up `kid`s cannot turn
    the verifier into a request amplifier against the auth service. After a failed fetch (auth still
    starting, or briefly down) the next try may come sooner (`retry_after_failure`): otherwise every
    token would be refused for the whole interval after auth comes back.
    """

    url: str
    _: KW_ONLY
    timeout: float = 3.0
    ttl: float = 300.0
    min_refresh_interval: float = 5.0
    retry_after_failure: float = 0.5
    fetch: Callable[[str, float], dict[str, Any]] | None = field(default=None, repr=False)
    tls: ClientTls | None = field(default=None, repr=False)
    _keys: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    _fetched_at: float = field(default=0.0, init=False, repr=False)
    _attempted_at: float = field(default=float("-inf"), init=False, repr=False)
    _last_attempt_failed: bool = field(default=False, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        # An https:// JWKS URL is checked against PM_HTTP_TLS_CA_FILE's CA when set (else the system's).
        tls = self.tls
        self._fetch = self.fetch or functools.partial(
            _http_get_json, verify=tls.ssl_context() if tls else True
        )

    def key_for(self, kid: str, *, fetch: bool = True) -> Any | None:
        now = time.monotonic()
        key = self._keys.get(kid)
        if key is not None and now - self._fetched_at < self.ttl:
            return key
        if not fetch:
            # A fetch under way (the lock is held) decides too: waiting for it is waiting on the network.
            if self._lock.locked() or now - self._attempted_at >= self._refresh_interval():
                raise FetchNeeded(kid)
            return key  # throttled: the last good key, if any
        self.refresh(force=False)
        if self._fetched_at >= now:
            # A fresh document decides alone: a key removed from it (revoked) is no longer trusted.
            return self._keys.get(kid)
        # The auth service is unreachable or we are throttled: the last good keys stay usable.
        return self._keys.get(kid, key)

    def refresh(self, *, force: bool = True) -> None:
        with self._lock:
            now = time.monotonic()
            if not force and now - self._attempted_at < self._refresh_interval():
                return
            try:
                document = self._fetch(self.url, self.timeout)
                self._keys = parse_jwks(document)
                self._fetched_at = now
                self._last_attempt_failed = False
            except Exception as exc:  # noqa: BLE001 - keep the last good keys, say why
                self._last_attempt_failed = True
                log.warning("JWKS fetch failed", extra={"url": self.url, "error": str(exc)[:200]})
            finally:
                # The pause runs from the end of the attempt: a slow fetch must not use it up.
                self._attempted_at = time.monotonic()

    def _refresh_interval(self) -> float:
        return self.retry_after_failure if self._last_attempt_failed else self.min_refresh_interval

    def ping(self) -> None:
        """Health check: the JWKS endpoint answers with at least one key."""
        if not parse_jwks(self._fetch(self.url, self.timeout)):
            raise RuntimeError("JWKS has no usable keys")


def _http_get_json(
    url: str,
    timeout: float,
    verify: ssl.SSLContext | bool = True,
    params: Mapping[str, Any] | None = None,
    *,
    client: httpx.Client | None = None,
) -> dict[str, Any]:
    """One JSON object from auth (its JWKS or a page of its revocation feed); raises on anything else.

    A caller that asks often passes its own `client` (kept connections, TLS context loaded once)."""
    if client is not None:
        response = client.get(url, params=params)
    else:
        response = httpx.get(url, params=params, timeout=timeout, verify=verify)
    response.raise_for_status()
    document = response.json()
    if not isinstance(document, dict):
        raise ValueError(f"{url} answered something else than a JSON object")
    return document


def parse_jwks(document: Mapping[str, Any]) -> dict[str, Any]:
    keys: dict[str, Any] = {}
    for entry in document.get("keys", []):
        kid = entry.get("kid")
        if not kid or entry.get("kty") not in ("RSA", "OKP"):
            continue
        try:
            keys[kid] = PyJWK(dict(entry)).key
        except Exception:  # noqa: BLE001 - one bad key must not hide the others
            log.warning("ignoring unusable JWKS key", extra={"kid": kid})
    return keys


RevocationFeed = Callable[[int], Mapping[str, Any]]
"""Fetches one page of auth's revocation feed after a cursor: `{"cursor", "revoked": [{"sid",
"until"}], "more"}`; raises when auth cannot be reached."""


@dataclass(eq=False)
class RevocationList(ThreadWorker):
    """The sessions that ended before their access tokens expired, kept in memory.

    A background thread (`start`) polls the feed every `interval` seconds, off the event loop; checking
    a token is a dictionary lookup. Entries are forgotten once every token of their session has expired
    (`until` plus the verifiers' leeway). When the feed cannot be reached, what is known stays in force
    and polling goes on; a failure is logged once per outage, not once per poll.
    """

    fetch: RevocationFeed
    _: KW_ONLY
    interval: float = 2.0
    leeway: float = 30.0
    clock: Callable[[], float] = time.time
    name: str = "revocations"
    _until: dict[str, float] = field(default_factory=dict, init=False, repr=False)
    _cursor: int = field(default=0, init=False, repr=False)
    _failing: bool = field(default=False, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)

    def is_revoked(self, session_id: str) -> bool:
        return session_id in self._until

    def poll(self) -> bool:
        """Read the feed up to its end; True when it was reachable."""
        with self._lock:
            try:
                while True:
                    page = self.fetch(self._cursor)
                    for entry in page.get("revoked", []):
                        self._until[str(entry["sid"])] = float(entry["until"])
                    cursor = int(page["cursor"])
                    advanced, self._cursor = cursor > self._cursor, max(cursor, self._cursor)
                    if not (page.get("more") and advanced):
                        break
            except Exception as exc:  # noqa: BLE001 - keep what is known, say why once
                if not self._failing:
                    log.warning(
                        "revocation feed unreachable", extra={"feed": self.name, "error": str(exc)[:200]}
                    )
                self._failing = True
                return False
            if self._failing:
                log.info("revocation feed reachable again", extra={"feed": self.name})
            self._failing = False
            horizon = self.clock() - self.leeway
            self._until = {sid: until for sid, until in self._until.items() if until > horizon}
            return True

    def thread_name(self) -> str:
        return f"{self.name}-poller"

    def join_seconds(self) -> float:
        return self.interval + 5

    def run(self) -> None:
        self.poll()
        while not self._stop.wait(self.interval):
            self.poll()


def http_revocation_feed(url: str, *, timeout: float = 2.0, tls: ClientTls | None = None) -> RevocationFeed:
    """Auth's `GET /revocations?since=` over HTTP(S), as a RevocationFeed.

    Polled every few seconds for the life of the process, so it keeps one client: a new one per poll
    loaded the CA bundle and opened a connection each time (a quarter of an idle patient's CPU samples)."""
    verify = tls.ssl_context() if tls else True
    client = httpx.Client(timeout=timeout, verify=verify)

    def fetch(after: int) -> Mapping[str, Any]:
        page = _http_get_json(url, timeout, params={"since": after}, client=client)
        if not isinstance(page.get("revoked"), list):
            raise ValueError("revocation feed answered something else than a page")
        return page

    return fetch


@dataclass(eq=False)
class VerifiedTokens:
    """Tokens whose signature and claims passed, remembered for at most `ttl` seconds and never past their
    `exp`: a client's repeated calls cost one signature check, not one per request. Keyed by the whole
    token, so a token differing in any byte is verified afresh. Whether a token's session has ended is not
    remembered (TokenVerifier checks that on every call). A key withdrawn from the JWKS stops a remembered
    token within `ttl`. At most `max_entries`: when full, expired entries go, and if that is not enough,
    all of them."""

    ttl: float = 60.0
    max_entries: int = 10_000
    clock: Callable[[], float] = time.time
    _valid: dict[str, tuple[dict[str, Any], float]] = field(default_factory=dict, init=False, repr=False)

    def get(self, token: str) -> dict[str, Any] | None:
        entry = self._valid.get(token)
        return entry[0] if entry is not None and self.clock() < entry[1] else None

    def put(self, token: str, claims: dict[str, Any]) -> None:
        now = self.clock()
        if len(self._valid) >= self.max_entries:
            # A copy first (one step under the GIL): other threads may put while the live ones are picked.
            live = {key: entry for key, entry in self._valid.copy().items() if now < entry[1]}
            self._valid = live if len(live) < self.max_entries else {}
        self._valid[token] = (claims, min(float(claims["exp"]), now + self.ttl))


@dataclass(eq=False)
class TokenVerifier:
    """Checks signature, algorithm, `kid`, expiry and issuer; with a RevocationList also that the
    token's session (`sid`) has not ended, and then a token without a session is refused. Tokens that
    passed are remembered (`verified`), their session checked again on every call."""

    keys: KeySource
    _: KW_ONLY
    issuer: str
    leeway: float = 30.0
    revocations: RevocationList | None = None
    verified: VerifiedTokens = field(default_factory=VerifiedTokens)

    async def verify_async(self, token: str) -> dict[str, Any]:
        """`verify` for the event loop: on the loop while the keys are at hand, in a worker thread when
        the key set must be fetched first."""
        try:
            return self.verify(token, fetch=False)
        except FetchNeeded:
            run = contextvars.copy_context().run  # the request id reaches the worker's log lines
            return await asyncio.get_running_loop().run_in_executor(
                KEY_FETCH_EXECUTOR, run, self.verify, token
            )

    def verify(self, token: str, *, fetch: bool = True) -> dict[str, Any]:
        """Return the claims of a valid token or raise InvalidToken (FetchNeeded when `fetch` is False
        and the key set must be fetched to decide)."""
        claims = self.verified.get(token)
        if claims is None:
            claims = self._signed_claims(token, fetch)
            self.verified.put(token, claims)
        if self.revocations is not None:
            self.check_session(claims)
        return claims

    def _signed_claims(self, token: str, fetch: bool) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("malformed token") from None
        algorithm = header.get("alg")
        if algorithm not in ALLOWED_ALGORITHMS:
            raise InvalidToken(f"algorithm {algorithm!r} is not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("token has no key id")
        key = self.keys.key_for(kid, fetch=fetch)
        if key is None:
            raise InvalidToken("unknown key id")
        if not _fits(key, algorithm):
            raise InvalidToken(f"algorithm {algorithm} does not match the key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": REQUIRED_CLAIMS, "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("token has expired") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("wrong issuer") from None
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"invalid token: {type(exc).__name__}") from None
        if claims.get("role") not in ROLES:
            raise InvalidToken("token has no valid role")
        return claims

    def check_session(self, claims: Mapping[str, Any]) -> None:
        """Raise InvalidToken if the token's session has ended (cheap: for tokens already verified)."""
        if self.revocations is None:
            return
        session_id = claims.get("sid")
        if not isinstance(session_id, str) or not session_id:
            raise InvalidToken("token has no session")
        if self.revocations.is_revoked(session_id):
            raise InvalidToken("session has ended")


def _fits(key: Any, algorithm: str) -> bool:
    return isinstance(key, KEY_TYPES[algorithm])


# RFC 6750 `b64token`: what a JWT is made of; whitespace, a second scheme or other junk never matches.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None for anything else.

    The one parser of bearer headers in the system (the gateway and every service): the scheme in any
    case, exactly one space, then one RFC 6750 `b64token`. No token, an empty one, extra or other
    whitespace and a doubled `Bearer` are refused rather than guessed at, so a header the gateway passes
    is one every service behind it reads the same way.
    """
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not _B64TOKEN.fullmatch(token) or token.lower() == "bearer":
        return None
    return token


async def bearer_info(token: str, request: Any) -> dict[str, Any] | None:
    """Connexion `x-bearerInfoFunc`: the claims of a valid token, None otherwise (a 401 problem).

    The verifier comes from `request.state.token_verifier`, put there by ServiceMiddleware(state=...).
    """
    verifier: TokenVerifier = request.state.token_verifier
    try:
        return await verifier.verify_async(token)
    except InvalidToken as exc:
        log.info("token rejected", extra={"reason": str(exc)})
        return None


def require_role(token_info: Mapping[str, Any] | None, *roles: str) -> None:
    """Raise a 403 problem unless the caller has one of `roles`."""
    from connexion.exceptions import ProblemException  # only Connexion apps call this

    if not token_info or token_info.get("role") not in roles:
        raise ProblemException(
            status=403, title="Forbidden", detail=f"This operation requires role {' or '.join(roles)}."
        )
