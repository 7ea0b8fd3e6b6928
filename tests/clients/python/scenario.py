"""The generated-client scenario (issue 11) with openapi-python-client, run by
.ci/e2e/clients.sh against a live server. `sigil_client` is generated from the committed
spec into generated/ (git-ignored); each step calls the generated function of one
operationId.

Environment: SIGIL_URL, SIGIL_TENANT, SIGIL_ADMIN_PASSWORD (the tenant's first admin).
"""

import datetime
import os
import sys
import time
import traceback

from sigil_client import AuthenticatedClient, Client
from sigil_client.api.audit import list_audit_events
from sigil_client.api.auth import confirm_password, get_current_user, login
from sigil_client.api.registry import create_scope_set, delete_scope_set, list_scope_sets
from sigil_client.api.tokens import create_token, delete_token, regenerate_token
from sigil_client.models import (
    AuditPage,
    Confirmation,
    ConfirmPasswordBody,
    CreateScopeSetBody,
    CreateTokenBody,
    CurrentUser,
    LoginBody,
    LoginResult,
    MintedTokenDto,
    Problem,
    ScopeSetDto,
    ScopeSetList,
)

BASE = os.environ["SIGIL_URL"]
TENANT = os.environ["SIGIL_TENANT"]
PASSWORD = os.environ["SIGIL_ADMIN_PASSWORD"]

passed = 0
failed = 0


def check(what, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok    {what}")
    else:
        failed += 1
        print(f"FAIL  {what} {detail}")


def ok(what, resp, status, model=None):
    """The parsed body of an expected answer (of the generated model), or an error."""
    check(
        f"{what} -> {status}",
        resp.status_code == status and (model is None or isinstance(resp.parsed, model)),
        f"got {int(resp.status_code)}: {resp.content[:500]!r}",
    )
    if resp.status_code != status:
        raise RuntimeError(f"{what}: cannot go on")
    return resp.parsed


def refused(what, resp, status, code):
    problem = resp.parsed
    check(
        f"{what} -> {status} {code}",
        resp.status_code == status and isinstance(problem, Problem) and problem.code == code,
        f"got {int(resp.status_code)}: {resp.content[:500]!r}",
    )


def as_token(token):
    return AuthenticatedClient(base_url=BASE, token=token, raise_on_unexpected_status=True)


def main():
    suffix = format(int(time.time() * 1000), "x")

    # login, then confirmPassword so token changes are allowed.
    anonymous = Client(base_url=BASE, raise_on_unexpected_status=True)
    result = ok(
        "login",
        login.sync_detailed(
            client=anonymous, body=LoginBody(tenant=TENANT, username="admin", password=PASSWORD)
        ),
        200,
        LoginResult,
    )
    check("login answers a bearer session", result.token_type == "Bearer" and result.token)
    session = as_token(result.token)
    confirmation = ok(
        "confirmPassword",
        confirm_password.sync_detailed(client=session, body=ConfirmPasswordBody(password=PASSWORD)),
        200,
        Confirmation,
    )
    check(
        "confirmation lasts into the future",
        confirmation.confirmed_until > datetime.datetime.now(datetime.timezone.utc),
    )

    # createScopeSet with the methods the minted token gets.
    set_id = f"client-py-{suffix}"
    scope_set = ok(
        "createScopeSet",
        create_scope_set.sync_detailed(
            client=session,
            body=CreateScopeSetBody(
                id=set_id, name="Python client scenario", methods=["me.get", "tokens.*"]
            ),
        ),
        201,
        ScopeSetDto,
    )
    check("the set has the given id", scope_set.id == set_id, scope_set)

    # listScopeSets and listAuditEvents answer the one list envelope.
    sets = ok(
        "listScopeSets",
        list_scope_sets.sync_detailed(client=session, q=set_id, offset=0, limit=10),
        200,
        ScopeSetList,
    )
    check(
        "the envelope pages the sets",
        (sets.total, sets.offset, sets.limit, [s.id for s in sets.items]) == (1, 0, 10, [set_id]),
        sets,
    )
    events = ok(
        "listAuditEvents",
        list_audit_events.sync_detailed(
            client=session, action="scope_set.create", target_id=set_id, offset=0, limit=1
        ),
        200,
        AuditPage,
    )
    check(
        "the audit page has the envelope too",
        events.total == 1 and events.offset == 0 and events.limit == 1 and len(events.items) == 1,
        events,
    )

    # createToken with that set.
    expires_at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
    minted = ok(
        "createToken",
        create_token.sync_detailed(
            client=session,
            body=CreateTokenBody(name=f"py-scenario-{suffix}", scope_set=set_id, expires_at=expires_at),
        ),
        201,
        MintedTokenDto,
    )
    check("the token uses the set", minted.token.scope.set_ == set_id, minted.token.scope)
    token_id = minted.token.id
    first_secret = minted.secret

    # getCurrentUser with the minted token.
    me = ok(
        "getCurrentUser with the minted token",
        get_current_user.sync_detailed(client=as_token(first_secret)),
        200,
        CurrentUser,
    )
    check("the credential is the minted token", me.token_id == token_id and me.token_kind == "personal", me)
    check(
        "its methods are within the set",
        "me.get" in me.methods and all(m == "me.get" or m.startswith("tokens.") for m in me.methods),
        me.methods,
    )

    # regenerateToken: the old secret is refused, the new one works.
    regenerated = ok(
        "regenerateToken",
        regenerate_token.sync_detailed(token_id, client=session),
        200,
        MintedTokenDto,
    )
    check("a new secret", regenerated.secret != first_secret and regenerated.token.id == token_id)
    check(
        "a new generation",
        regenerated.token.generation == minted.token.generation + 1,
        regenerated.token.generation,
    )
    refused(
        "getCurrentUser with the old secret",
        get_current_user.sync_detailed(client=as_token(first_secret)),
        401,
        "token_replaced",
    )
    again = ok(
        "getCurrentUser with the new secret",
        get_current_user.sync_detailed(client=as_token(regenerated.secret)),
        200,
        CurrentUser,
    )
    check("still the same token", again.token_id == token_id)

    # deleteToken: the secret stops working.
    ok("deleteToken", delete_token.sync_detailed(token_id, client=session), 204)
    refused(
        "getCurrentUser after deleteToken",
        get_current_user.sync_detailed(client=as_token(regenerated.secret)),
        401,
        "token_unknown",
    )

    ok("deleteScopeSet (clean-up)", delete_scope_set.sync_detailed(set_id, client=session), 204)


if __name__ == "__main__":
    try:
        main()
    except Exception:
        failed += 1
        print("FAIL  " + traceback.format_exc())
    print(f"python client: {passed} passed, {failed} failed")
    sys.exit(0 if failed == 0 else 1)
