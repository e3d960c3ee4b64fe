"""Tokens: minting, checking, the Bearer header and roles."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from liveserver.auth import (
    ALGORITHM,
    MAX_NAME,
    Principal,
    Role,
    TokenError,
    bearer_token,
    mint_token,
    verify_token,
)
from liveserver.errors import ApiError, Unauthorized

# 64 characters: long enough for HS256 and for HS512 without key-length warnings.
SECRET = "k3y-for-unit-tests-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHI"
OTHER_SECRET = "another-key-for-unit-tests-0123456789abcdefghijklmnopqrstuvwxyz!"
assert len(SECRET) >= 64 and len(OTHER_SECRET) >= 64


def _claims(**over: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {"sub": "alice", "role": "viewer", "exp": int(time.time()) + 3600}
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not _DROP}


_DROP = object()


def _raw(claims: dict[str, Any], secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=algorithm)


def _reject(token: str, secret: str = SECRET) -> TokenError:
    with pytest.raises(TokenError) as info:
        verify_token(token, secret)
    return info.value


# --------------------------------------------------------------------------- round trips


def test_token_error_is_unauthorized_401() -> None:
    assert issubclass(TokenError, Unauthorized)
    assert issubclass(TokenError, ApiError)
    err = TokenError("nope")
    assert err.status == 401
    assert err.code == "unauthorized"
    assert err.body() == {"error": {"code": "unauthorized", "message": "nope"}}


def test_algorithm_is_hs256() -> None:
    assert ALGORITHM == "HS256"
    header = jwt.get_unverified_header(mint_token(SECRET, "alice"))
    assert header["alg"] == "HS256"


def test_round_trip_with_name() -> None:
    now = time.time()
    token = mint_token(SECRET, "host_1", Role.HOST, name="主播小王🎉", ttl_s=600, now=now)
    p = verify_token(token, SECRET)
    assert p == Principal(user="host_1", role=Role.HOST, name="主播小王🎉", exp=int(now) + 600)
    assert p.role is Role.HOST
    assert not p.is_admin


@pytest.mark.parametrize("role", ["viewer", "host", "admin", Role.VIEWER, Role.HOST, Role.ADMIN])
def test_round_trip_every_role(role: Any) -> None:
    p = verify_token(mint_token(SECRET, "u.1-x_Y", role), SECRET)
    assert p.role is Role(role)
    assert p.user == "u.1-x_Y"
    assert p.is_admin is (Role(role) is Role.ADMIN)


def test_default_role_is_viewer() -> None:
    assert verify_token(mint_token(SECRET, "bob"), SECRET).role is Role.VIEWER


def test_default_name_is_sub() -> None:
    p = verify_token(mint_token(SECRET, "bob"), SECRET)
    assert p.name == "bob"
    assert "name" not in jwt.decode(mint_token(SECRET, "bob"), SECRET, algorithms=["HS256"])


def test_name_of_max_length_accepted() -> None:
    name = "n" * MAX_NAME
    assert verify_token(mint_token(SECRET, "bob", name=name), SECRET).name == name


def test_sub_of_64_chars_with_short_name_accepted() -> None:
    sub = "a" * 64
    p = verify_token(mint_token(SECRET, sub, name="Ann"), SECRET)
    assert p.user == sub
    assert p.name == "Ann"


def test_mint_rejects_unknown_role() -> None:
    with pytest.raises(ValueError):
        mint_token(SECRET, "bob", "superuser")


# --------------------------------------------------------------------------- rejections


def test_expired_token() -> None:
    token = mint_token(SECRET, "bob", ttl_s=60, now=time.time() - 3600)
    err = _reject(token)
    assert "expired" in err.message
    assert err.status == 401


def test_wrong_secret() -> None:
    err = _reject(mint_token(SECRET, "bob"), OTHER_SECRET)
    assert "invalid token" in err.message


def test_missing_exp() -> None:
    err = _reject(_raw(_claims(exp=_DROP)))
    assert "exp" in err.message


def test_missing_sub() -> None:
    err = _reject(_raw(_claims(sub=_DROP)))
    assert "sub" in err.message


@pytest.mark.parametrize("sub", ["", "a" * 65, "has space", "ünï", "a/b", 12])
def test_bad_sub(sub: Any) -> None:
    _reject(_raw(_claims(sub=sub)))


@pytest.mark.parametrize("role", ["superuser", "", "Admin", None, 1])
def test_bad_role(role: Any) -> None:
    err = _reject(_raw(_claims(role=role)))
    assert "role" in err.message


def test_missing_role() -> None:
    err = _reject(_raw(_claims(role=_DROP)))
    assert "role" in err.message


@pytest.mark.parametrize("name", ["n" * (MAX_NAME + 1), "", 5, ["x"]])
def test_bad_name(name: Any) -> None:
    err = _reject(_raw(_claims(name=name)))
    assert "name" in err.message


def test_alg_none_rejected() -> None:
    token = jwt.encode(_claims(), None, algorithm="none")
    assert token.endswith(".")  # an unsigned token
    _reject(token)


def test_hs512_rejected() -> None:
    token = _raw(_claims(), algorithm="HS512")
    assert jwt.get_unverified_header(token)["alg"] == "HS512"
    # the same key and valid claims: only the algorithm is wrong
    assert jwt.decode(token, SECRET, algorithms=["HS512"])["sub"] == "alice"
    _reject(token)


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "a.b", "é.é.é"])
def test_malformed_tokens(token: str) -> None:
    err = _reject(token)
    assert "invalid token" in err.message


def test_tampered_payload_rejected() -> None:
    token = mint_token(SECRET, "bob", Role.VIEWER)
    forged = _raw(_claims(sub="bob", role="admin"), secret=OTHER_SECRET)
    header, _, sig = token.split(".")
    _, payload, _ = forged.split(".")
    _reject(f"{header}.{payload}.{sig}")


# --------------------------------------------------------------------------- Bearer header


@pytest.mark.parametrize("header", [None, ""])
def test_bearer_missing_header(header: str | None) -> None:
    with pytest.raises(TokenError) as info:
        bearer_token(header)
    assert "missing" in info.value.message


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Token abc", "Bearerabc", "abc", "Bearer", "Bearer ", "Bearer    "])
def test_bearer_wrong_scheme_or_empty_token(header: str) -> None:
    with pytest.raises(TokenError):
        bearer_token(header)


@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer abc.def.ghi", "abc.def.ghi"), ("bearer abc", "abc"), ("BEARER abc", "abc"), ("Bearer  abc  ", "abc")],
)
def test_bearer_token_parsed(header: str, token: str) -> None:
    assert bearer_token(header) == token


def test_bearer_then_verify() -> None:
    token = mint_token(SECRET, "carol", Role.ADMIN)
    assert verify_token(bearer_token(f"Bearer {token}"), SECRET).user == "carol"


# --------------------------------------------------------------------------- roles


def _p(user: str, role: Role) -> Principal:
    return Principal(user=user, role=role, name=user, exp=0)


def test_host_may_run_own_room() -> None:
    assert _p("h1", Role.HOST).may_run("h1") is True


def test_host_may_not_run_other_hosts_room() -> None:
    assert _p("h2", Role.HOST).may_run("h1") is False


def test_admin_may_run_any_room() -> None:
    admin = _p("root", Role.ADMIN)
    assert admin.may_run("h1") is True
    assert admin.may_run("someone-else") is True
    assert admin.is_admin


def test_viewer_may_not_run_even_with_matching_user() -> None:
    viewer = _p("h1", Role.VIEWER)
    assert viewer.may_run("h1") is False
    assert not viewer.is_admin


def test_long_sub_without_name_is_accepted() -> None:
    """A sub of 33-64 characters with no name claim: the display name defaults to the sub."""
    p = verify_token(mint_token(SECRET, "a" * 64), SECRET)
    assert p.user == "a" * 64 and p.name == "a" * 64


def test_sub_with_trailing_newline_rejected() -> None:
    raw = jwt.encode({"sub": "alice\n", "role": "viewer", "exp": 2**40}, SECRET, algorithm="HS256")
    with pytest.raises(TokenError):
        verify_token(raw, SECRET)


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
def test_numeric_dates_must_be_numbers(claim: str) -> None:
    """RFC 7519 4.1.4: a NumericDate is a JSON number; PyJWT alone takes the string "1999999999"."""
    value = int(time.time()) + (3600 if claim == "exp" else -60)
    err = _reject(_raw(_claims(**{claim: str(value)})))
    assert claim in err.message and err.status == 401
    assert verify_token(_raw(_claims(**{claim: value})), SECRET).user == "alice"


def test_a_token_that_cannot_be_encoded_is_refused_not_raised() -> None:
    err = _reject("eyJ\ud800.e30.sig")  # a lone surrogate: PyJWT's .encode() would raise
    assert err.status == 401
