"""The generated-client scenario with openapi-python-client, run by .ci/e2e/clients.sh
against a live server. `sigil_client` is generated from the committed spec into generated/
(git-ignored); every step calls the generated function of one operationId.

Every operationId of openapi/sigil.json is called at least once through the generated code
and its typed answer checked: the scenario reads the operationIds from the spec at the
start and fails at the end if one was not called (so a new operation without a client call
fails the check), or if the generator made no function for one.

Environment: SIGIL_URL, SIGIL_TENANT, SIGIL_ADMIN_PASSWORD (the tenant's first admin),
SIGIL_OPERATOR_TOKEN (from `sigil operator token`), SIGIL_SPEC (default: the committed spec).
"""

import base64
import datetime
import functools
import hashlib
import hmac
import importlib
import json
import os
import pkgutil
import re
import struct
import sys
import time
import traceback
import uuid

import builtins

# Work-around for a bug of openapi-python-client 0.29.1 (upstream issue #1451, fix pending
# in PR #1478): an operation whose required request body has several content types (JSON
# and form: introspectToken) gets `body: A | B | Unset = UNSET` without importing `Unset`,
# so its generated module fails to import with NameError. Until the fix is released, the
# name is made resolvable for the generated code here; the module itself is used as is.
import sigil_client.types

builtins.Unset = sigil_client.types.Unset

import sigil_client.api  # noqa: E402
from sigil_client import AuthenticatedClient, Client  # noqa: E402
from sigil_client.api.audit import list_audit_events
from sigil_client.api.auth import (
    begin_totp_enrolment,
    change_password,
    complete_login,
    confirm_password,
    confirm_totp_enrolment,
    disable_totp,
    get_current_user,
    login,
    update_current_user,
)
from sigil_client.api.registry import (
    create_scope_set,
    delete_plugin,
    delete_scope_set,
    get_plugin,
    get_scope_set,
    list_methods,
    list_plugins,
    list_scope_sets,
    register_plugin,
    update_scope_set,
)
from sigil_client.api.service import get_health, get_readiness
from sigil_client.api.tenants import (
    create_tenant,
    disable_tenant,
    get_jwks,
    get_my_tenant,
    get_tenant,
    list_signing_keys,
    list_tenants,
    rotate_signing_key,
    update_tenant,
    update_tenant_policy,
)
from sigil_client.api.tokens import (
    copy_token,
    create_token,
    delete_token,
    delete_tokens,
    get_token,
    get_token_hygiene,
    list_tokens,
    regenerate_token,
    rotate_current_token,
    report_leaked_tokens,
    report_secret_scanning_matches,
    update_token,
)
from sigil_client.api.users import (
    create_user,
    deactivate_user,
    delete_user,
    get_user,
    list_users,
    reset_user_two_factor,
    update_user,
)
from sigil_client.api.verification import authorize_request, introspect_token
from sigil_client.api.webhooks import (
    create_webhook,
    delete_webhook,
    get_webhook,
    list_webhook_deliveries,
    list_webhooks,
    send_test_webhook,
    update_webhook,
)
from sigil_client.models import (
    AccessDto,
    AuditPage,
    AuthorizeResult,
    ChangePasswordBody,
    CompleteLoginBody,
    ConfirmTotpBody,
    DisableTotpBody,
    LoginChallenge,
    TotpEnabled,
    TotpEnrolment,
    Confirmation,
    ConfirmPasswordBody,
    CreatedTenant,
    CreateScopeSetBody,
    CreateTenantBody,
    CreateTokenBody,
    CreateUserBody,
    CurrentUser,
    DeletedPluginDto,
    DeletedTokens,
    DeleteTokensBody,
    HealthStatus,
    HttpRouteDto,
    IntrospectBody,
    Introspection,
    JwksDto,
    LeakReport,
    LeakReportReceipt,
    LoginBody,
    LoginResult,
    ManifestDto,
    ManifestMethodDto,
    MethodList,
    MintedTokenDto,
    PluginDto,
    PluginList,
    Problem,
    RegenerateTokenBody,
    RegisteredPluginDto,
    RegisterPluginBody,
    ReportSecretScanningMatchesBodyItem,
    RoleDto,
    RotateKeyBody,
    ScopeSetDto,
    ScopeSetList,
    SigningKeyDto,
    SigningKeyList,
    TenantDto,
    TenantList,
    TokenDto,
    TokenHygiene,
    TokenList,
    UpdateCurrentUserBody,
    UpdateScopeSetBody,
    UpdateTenantBody,
    UpdateTokenBody,
    UpdateUserBody,
    UserDto,
    UserKindDto,
    UserList,
    CreatedWebhookDto,
    CreateWebhookBody,
    UpdatedWebhookDto,
    UpdateWebhookBody,
    WebhookDeliveryDto,
    WebhookDeliveryList,
    WebhookDto,
    WebhookEventType,
    WebhookList,
)

BASE = os.environ["SIGIL_URL"]
TENANT = os.environ["SIGIL_TENANT"]
PASSWORD = os.environ["SIGIL_ADMIN_PASSWORD"]
OPERATOR_TOKEN = os.environ["SIGIL_OPERATOR_TOKEN"]
SPEC = os.environ.get(
    "SIGIL_SPEC",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "openapi", "sigil.json"),
)

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


# Coverage: every generated operation function records its operationId when called. The
# module of an operation is the snake_case of its operationId.
def snake(operation_id):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation_id).lower()


def spec_operation_ids():
    with open(SPEC, encoding="utf-8") as f:
        spec = json.load(f)
    verbs = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
    return sorted(
        op["operationId"]
        for item in spec["paths"].values()
        for verb, op in item.items()
        if verb in verbs
    )


called = set()
generated = {}


def record_calls():
    for info in pkgutil.walk_packages(sigil_client.api.__path__, sigil_client.api.__name__ + "."):
        module = importlib.import_module(info.name)
        if not hasattr(module, "sync_detailed"):
            continue
        name = info.name.rsplit(".", 1)[1]
        generated[name] = module
        for fn in ("sync_detailed", "sync", "asyncio_detailed", "asyncio"):
            original = getattr(module, fn, None)
            if original is None:
                continue

            def wrapper(*args, _original=original, _name=name, **kwargs):
                called.add(_name)
                return _original(*args, **kwargs)

            setattr(module, fn, functools.wraps(original)(wrapper))


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
    """A typed error: the generated Problem model with the expected status and code."""
    problem = resp.parsed
    check(
        f"{what} -> {status} {code}",
        resp.status_code == status
        and isinstance(problem, Problem)
        and problem.status == status
        and problem.code == code,
        f"got {int(resp.status_code)}: {resp.content[:500]!r}",
    )


def totp_code(secret):
    """The TOTP code of now (RFC 6238: HMAC-SHA1, 6 digits, 30 s), as an authenticator app makes it."""
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    mac = hmac.new(key, struct.pack(">Q", int(time.time() // 30)), hashlib.sha1).digest()
    at = mac[-1] & 15
    return f"{(struct.unpack('>I', mac[at:at + 4])[0] & 0x7FFFFFFF) % 1000000:06d}"


def as_token(token):
    return AuthenticatedClient(base_url=BASE, token=token, raise_on_unexpected_status=True)


def now():
    return datetime.datetime.now(datetime.timezone.utc)


def main():
    suffix = format(int(time.time() * 1000), "x")
    anonymous = Client(base_url=BASE, raise_on_unexpected_status=True)
    operator = as_token(OPERATOR_TOKEN)

    # --- Service: getHealth, getReadiness.
    health = ok("getHealth", get_health.sync_detailed(client=anonymous), 200, HealthStatus)
    check("health is ok with a version", health.status == "ok" and health.version, health)
    ready = ok("getReadiness", get_readiness.sync_detailed(client=anonymous), 200, HealthStatus)
    check("ready is ok", ready.status == "ok", ready)

    # --- Auth: login, confirmPassword, getCurrentUser, updateCurrentUser.
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
    refused(
        "login with a wrong password",
        login.sync_detailed(
            client=anonymous, body=LoginBody(tenant=TENANT, username="admin", password="wrong-" + suffix)
        ),
        401,
        "invalid_credentials",
    )
    confirmation = ok(
        "confirmPassword",
        confirm_password.sync_detailed(client=session, body=ConfirmPasswordBody(password=PASSWORD)),
        200,
        Confirmation,
    )
    check("confirmation lasts into the future", confirmation.confirmed_until > now())
    me = ok("getCurrentUser (session)", get_current_user.sync_detailed(client=session), 200, CurrentUser)
    check(
        "the session is the admin's",
        me.user.username == "admin" and me.role == RoleDto.ADMIN and me.tenant == TENANT,
        me,
    )
    admin_id = me.user.id
    renamed = ok(
        "updateCurrentUser",
        update_current_user.sync_detailed(
            client=session, body=UpdateCurrentUserBody(display_name=f"Admin {suffix}")
        ),
        200,
        UserDto,
    )
    check("the display name changed", renamed.display_name == f"Admin {suffix}", renamed)

    # --- Own tenant: getMyTenant, updateTenantPolicy, listSigningKeys, rotateSigningKey, getJwks.
    tenant = ok("getMyTenant", get_my_tenant.sync_detailed(client=session), 200, TenantDto)
    check("the tenant is the session's", tenant.slug == TENANT and tenant.enabled, tenant)
    policy = tenant.policy
    policy.max_tokens_per_user = policy.max_tokens_per_user - 1
    updated = ok(
        "updateTenantPolicy",
        update_tenant_policy.sync_detailed(client=session, body=policy),
        200,
        TenantDto,
    )
    check(
        "the policy changed",
        updated.policy.max_tokens_per_user == tenant.policy.max_tokens_per_user,
        updated.policy,
    )
    keys = ok(
        "listSigningKeys",
        list_signing_keys.sync_detailed(client=session, offset=0, limit=50),
        200,
        SigningKeyList,
    )
    check("one active key", [k.state for k in keys.items].count("active") == 1, keys)
    rotated = ok(
        "rotateSigningKey",
        rotate_signing_key.sync_detailed(client=session, body=RotateKeyBody(overlap_secs=3600)),
        201,
        SigningKeyDto,
    )
    check(
        "the new key is active and new",
        rotated.state == "active" and rotated.kid not in {k.kid for k in keys.items},
        rotated,
    )
    jwks = ok("getJwks", get_jwks.sync_detailed(TENANT, client=anonymous), 200, JwksDto)
    check(
        "the JWKS publishes the new key and the retiring one",
        {rotated.kid} | {k.kid for k in keys.items} <= {k.kid for k in jwks.keys}
        and all(k.kty == "OKP" and k.crv == "Ed25519" for k in jwks.keys),
        jwks,
    )
    refused("getJwks of an unknown tenant", get_jwks.sync_detailed(f"nope-{suffix}", client=anonymous), 404, "not_found")

    # --- Registry: listMethods, listPlugins, registerPlugin, getPlugin, deletePlugin.
    methods = ok(
        "listMethods",
        list_methods.sync_detailed(client=session, plugin="platform", access=AccessDto.READ, limit=200),
        200,
        MethodList,
    )
    check(
        "the platform plugin's read methods",
        methods.total > 0
        and all(m.plugin == "platform" and m.access == AccessDto.READ for m in methods.items)
        and "platform.environment.control.getenvs" in {m.id for m in methods.items},
        methods.total,
    )
    plugins = ok("listPlugins", list_plugins.sync_detailed(client=session, limit=200), 200, PluginList)
    check("the platform plugin is listed", "platform" in {p.id for p in plugins.items}, plugins.total)
    plugin_id = f"pyplug{suffix}"
    registered = ok(
        "registerPlugin",
        register_plugin.sync_detailed(
            client=session,
            body=RegisterPluginBody(
                manifest=ManifestDto(
                    id=plugin_id,
                    name="Python scenario plugin",
                    version="1.0.0",
                    methods=[
                        ManifestMethodDto(
                            id=f"{plugin_id}.items.list",
                            http=HttpRouteDto(method="GET", path="/items"),
                            access=AccessDto.READ,
                            description="List the items.",
                        )
                    ],
                )
            ),
        ),
        201,
        RegisteredPluginDto,
    )
    check(
        "the plugin is registered with its method",
        registered.plugin.id == plugin_id
        and [m.id for m in registered.plugin.methods] == [f"{plugin_id}.items.list"],
        registered.plugin,
    )
    plugin = ok("getPlugin", get_plugin.sync_detailed(plugin_id, client=session), 200, PluginDto)
    check("getPlugin answers the plugin", plugin.id == plugin_id and plugin.version == "1.0.0", plugin)
    removed = ok("deletePlugin", delete_plugin.sync_detailed(plugin_id, client=session), 200, DeletedPluginDto)
    check(
        "the plugin's methods are removed",
        removed.id == plugin_id and removed.removed_methods == [f"{plugin_id}.items.list"],
        removed,
    )
    refused("getPlugin after deletePlugin", get_plugin.sync_detailed(plugin_id, client=session), 404, "not_found")

    # --- Scope sets: createScopeSet, listScopeSets, getScopeSet, updateScopeSet.
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
    got_set = ok("getScopeSet", get_scope_set.sync_detailed(set_id, client=session), 200, ScopeSetDto)
    check("getScopeSet answers its entries", got_set.entries == ["me.get", "tokens.*"], got_set)
    changed_set = ok(
        "updateScopeSet",
        update_scope_set.sync_detailed(
            set_id, client=session, body=UpdateScopeSetBody(name="Python client scenario (renamed)")
        ),
        200,
        ScopeSetDto,
    )
    check("the set is renamed", changed_set.name == "Python client scenario (renamed)", changed_set)

    # --- Users: createUser, listUsers, getUser, updateUser, changePassword (as the user).
    member_name = f"py-member-{suffix}"
    member_password = f"Py-member-pass-{suffix}-1"
    member = ok(
        "createUser",
        create_user.sync_detailed(
            client=session,
            body=CreateUserBody(
                username=member_name,
                display_name="Python member",
                kind=UserKindDto.PERSON,
                role=RoleDto.MEMBER,
                password=member_password,
            ),
        ),
        201,
        UserDto,
    )
    check("the user is an active member", member.role == RoleDto.MEMBER and member.active, member)
    users = ok(
        "listUsers",
        list_users.sync_detailed(client=session, q=member_name, role=RoleDto.MEMBER, limit=10),
        200,
        UserList,
    )
    check("listUsers finds the member", [u.id for u in users.items] == [member.id], users)
    got_user = ok("getUser", get_user.sync_detailed(member.id, client=session), 200, UserDto)
    check("getUser answers the member", got_user.username == member_name, got_user)
    refused("getUser of an unknown id", get_user.sync_detailed(uuid.uuid4(), client=session), 404, "not_found")
    changed_user = ok(
        "updateUser",
        update_user.sync_detailed(
            member.id, client=session, body=UpdateUserBody(display_name="Python member (renamed)")
        ),
        200,
        UserDto,
    )
    check("the user is renamed", changed_user.display_name == "Python member (renamed)", changed_user)
    member_login = ok(
        "login as the member",
        login.sync_detailed(
            client=anonymous,
            body=LoginBody(tenant=TENANT, username=member_name, password=member_password),
        ),
        200,
        LoginResult,
    )
    member_session = as_token(member_login.token)
    refused(
        "listUsers as a member",
        list_users.sync_detailed(client=member_session),
        403,
        "user_lacks_permission",
    )
    new_password = f"Py-member-pass-{suffix}-2"
    ok(
        "changePassword",
        change_password.sync_detailed(
            client=member_session,
            body=ChangePasswordBody(current_password=member_password, new_password=new_password),
        ),
        204,
    )
    ok(
        "login with the new password",
        login.sync_detailed(
            client=anonymous, body=LoginBody(tenant=TENANT, username=member_name, password=new_password)
        ),
        200,
        LoginResult,
    )

    # --- Tokens: createToken, getCurrentUser with it, getToken, updateToken, listTokens,
    # copyToken, regenerateToken, getTokenHygiene, deleteTokens, deleteToken.
    expires_at = now() + datetime.timedelta(days=1)
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
    got_token = ok("getToken", get_token.sync_detailed(token_id, client=session), 200, TokenDto)
    check(
        "getToken answers the token (own session: no ceiling)",
        got_token.id == token_id and got_token.owner_id == admin_id and got_token.ceiling is None,
        got_token,
    )
    changed_token = ok(
        "updateToken",
        update_token.sync_detailed(
            token_id, client=session, body=UpdateTokenBody(name=f"py-scenario-{suffix}-renamed")
        ),
        200,
        TokenDto,
    )
    check("the token is renamed", changed_token.name == f"py-scenario-{suffix}-renamed", changed_token)
    tokens = ok(
        "listTokens",
        list_tokens.sync_detailed(client=session, q=f"py-scenario-{suffix}", scope_set=set_id, limit=10),
        200,
        TokenList,
    )
    check("listTokens finds the token", [t.id for t in tokens.items] == [token_id], tokens)
    copied = ok(
        "copyToken",
        copy_token.sync_detailed(token_id, client=session, name=f"py-copy-{suffix}"),
        201,
        MintedTokenDto,
    )
    check(
        "the copy is a new token with the same scope",
        copied.token.id != token_id and copied.token.scope.set_ == set_id and copied.secret != first_secret,
        copied.token,
    )
    regenerated = ok(
        "regenerateToken",
        regenerate_token.sync_detailed(
            token_id, client=session, body=RegenerateTokenBody(grace_period_secs=0)
        ),
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
    # rotateCurrentToken: a login session cannot rotate itself (tokens do).
    refused(
        "rotateCurrentToken with a login session",
        rotate_current_token.sync_detailed(client=session),
        403,
        "session_not_rotatable",
    )
    hygiene = ok(
        "getTokenHygiene",
        get_token_hygiene.sync_detailed(client=session, expiring_within_days=2, unused_for_days=30),
        200,
        TokenHygiene,
    )
    check(
        "the token expiring tomorrow is listed as expiring",
        token_id in {t.id for t in hygiene.expiring},
        [t.id for t in hygiene.expiring],
    )

    # --- Verification: introspectToken, authorizeRequest (forward auth).
    introspected = ok(
        "introspectToken",
        introspect_token.sync_detailed(
            client=session, body=IntrospectBody(token=regenerated.secret, method="me.get")
        ),
        200,
        Introspection,
    )
    check(
        "the token is active and may call me.get",
        introspected.active and introspected.token_id == token_id and introspected.method_allowed is True,
        introspected,
    )
    denied = ok(
        "introspectToken for a method outside the scope",
        introspect_token.sync_detailed(
            client=session, body=IntrospectBody(token=regenerated.secret, method="users.list")
        ),
        200,
        Introspection,
    )
    check(
        "inactive for that method: method_not_in_scope",
        not denied.active and denied.method_allowed is False and denied.code == "method_not_in_scope",
        denied,
    )
    forward = ok(
        "createToken for forward auth",
        create_token.sync_detailed(
            client=session,
            body=CreateTokenBody(
                name=f"py-forward-{suffix}",
                methods=["platform.environment.control.getenvs"],
                expires_at=expires_at,
            ),
        ),
        201,
        MintedTokenDto,
    )
    allowed = ok(
        "authorizeRequest",
        authorize_request.sync_detailed(
            client=as_token(forward.secret),
            x_original_method="GET",
            x_original_uri="/1.0/environment/control/rest/getenvs?x=1",
        ),
        200,
        AuthorizeResult,
    )
    check(
        "forward auth maps the route to the method",
        allowed.method == "platform.environment.control.getenvs"
        and allowed.token_id == forward.token.id
        and allowed.tenant == TENANT
        and allowed.user == "admin",
        allowed,
    )
    refused(
        "authorizeRequest for a method outside the scope",
        authorize_request.sync_detailed(
            client=as_token(forward.secret),
            x_forwarded_method="GET",
            x_forwarded_uri="/1.0/environment/control/rest/getenvinfo",
        ),
        403,
        "method_not_in_scope",
    )

    # --- Leaks: reportLeakedTokens revokes; reportSecretScanningMatches is refused unconfigured.
    receipt = ok(
        "reportLeakedTokens",
        report_leaked_tokens.sync_detailed(
            client=session,
            body=LeakReport(secrets=[forward.secret], source="python-scenario", url="https://example.com/paste"),
        ),
        202,
        LeakReportReceipt,
    )
    check("one secret received", receipt.received == 1, receipt)
    refused(
        "authorizeRequest with the leaked token",
        authorize_request.sync_detailed(
            client=as_token(forward.secret), x_original_uri="/1.0/environment/control/rest/getenvs"
        ),
        401,
        "token_leaked",
    )
    refused(
        "reportSecretScanningMatches without partner keys",
        report_secret_scanning_matches.sync_detailed(
            client=anonymous,
            body=[ReportSecretScanningMatchesBodyItem(token=forward.secret, type_="sigil_token", source="content")],
            github_public_key_identifier="kid",
            github_public_key_signature="c2ln",
        ),
        403,
        "leak_reports_not_configured",
    )

    # --- Webhooks: an endpoint (a `.invalid` host: nothing is really sent), its secret
    # once, a test delivery in its log, a secret rotation, then removal.
    hook = ok(
        "createWebhook",
        create_webhook.sync_detailed(
            client=session,
            body=CreateWebhookBody(
                url="https://hooks.invalid/python",
                event_types=[WebhookEventType.TOKEN_CREATED, WebhookEventType.TOKEN_LEAKED],
                description="python",
            ),
        ),
        201,
        CreatedWebhookDto,
    )
    check("a whsec_ secret", hook.secret.startswith("whsec_"), hook)
    hook_list = ok("listWebhooks", list_webhooks.sync_detailed(client=session), 200, WebhookList)
    check("the endpoint is listed", any(w.id == hook.webhook.id for w in hook_list.items), hook_list)
    hook_got = ok("getWebhook", get_webhook.sync_detailed(hook.webhook.id, client=session), 200, WebhookDto)
    check(
        "its events",
        [t.value for t in hook_got.event_types] == ["token.created", "token.leaked"],
        hook_got,
    )
    hook_rotated = ok(
        "updateWebhook",
        update_webhook.sync_detailed(
            hook.webhook.id, client=session, body=UpdateWebhookBody(rotate_secret=True, enabled=False)
        ),
        200,
        UpdatedWebhookDto,
    )
    check(
        "a new secret",
        isinstance(hook_rotated.secret, str) and hook_rotated.secret != hook.secret and not hook_rotated.webhook.enabled,
        hook_rotated,
    )
    hook_queued = ok(
        "sendTestWebhook",
        send_test_webhook.sync_detailed(hook.webhook.id, client=session),
        202,
        WebhookDeliveryDto,
    )
    check("a pending test delivery", hook_queued.event_type == "webhook.test", hook_queued)
    hook_log = ok(
        "listWebhookDeliveries",
        list_webhook_deliveries.sync_detailed(hook.webhook.id, client=session),
        200,
        WebhookDeliveryList,
    )
    check("the delivery is in the log", any(d.id == hook_queued.id for d in hook_log.items), hook_log)
    ok("deleteWebhook", delete_webhook.sync_detailed(hook.webhook.id, client=session), 204)

    # --- Clean-up of tokens: deleteTokens (bulk), deleteToken.
    bulk = ok(
        "deleteTokens",
        delete_tokens.sync_detailed(
            client=session, body=DeleteTokensBody(ids=[copied.token.id, forward.token.id])
        ),
        200,
        DeletedTokens,
    )
    check(
        "both tokens deleted",
        bulk.count == 2 and {r.id for r in bulk.removed} == {copied.token.id, forward.token.id},
        bulk,
    )
    ok("deleteToken", delete_token.sync_detailed(token_id, client=session), 204)
    refused(
        "getCurrentUser after deleteToken",
        get_current_user.sync_detailed(client=as_token(regenerated.secret)),
        401,
        "token_unknown",
    )
    refused("getToken after deleteToken", get_token.sync_detailed(token_id, client=session), 404, "not_found")
    ok("deleteScopeSet", delete_scope_set.sync_detailed(set_id, client=session), 204)
    refused("getScopeSet after deleteScopeSet", get_scope_set.sync_detailed(set_id, client=session), 404, "not_found")

    # --- Two-factor sign-in (as the member): beginTotpEnrolment, confirmTotpEnrolment, a
    # login challenge, completeLogin, disableTotp, resetUserTwoFactor.
    member_login = login.sync_detailed(
        client=anonymous, body=LoginBody(tenant=TENANT, username=member_name, password=new_password)
    )
    tf_session = as_token(ok("login as the member (two-factor)", member_login, 200, LoginResult).token)
    enrolment = ok("beginTotpEnrolment", begin_totp_enrolment.sync_detailed(client=tf_session), 200, TotpEnrolment)
    check(
        "the enrolment carries an otpauth URI and a QR code",
        enrolment.otpauth_uri.startswith("otpauth://totp/") and "<svg" in enrolment.qr_code_svg,
        enrolment.otpauth_uri,
    )
    enabled = ok(
        "confirmTotpEnrolment",
        confirm_totp_enrolment.sync_detailed(
            client=tf_session, body=ConfirmTotpBody(code=totp_code(enrolment.secret), password=new_password)
        ),
        200,
        TotpEnabled,
    )
    check("ten recovery codes", len(enabled.recovery_codes) == 10, enabled.recovery_codes)
    challenge = ok(
        "login answers a challenge",
        login.sync_detailed(
            client=anonymous, body=LoginBody(tenant=TENANT, username=member_name, password=new_password)
        ),
        202,
        LoginChallenge,
    )
    refused(
        "completeLogin with a made-up challenge",
        complete_login.sync_detailed(client=anonymous, body=CompleteLoginBody(challenge="made-up", code="123456")),
        401,
        "challenge_invalid",
    )
    completed = ok(
        "completeLogin",
        complete_login.sync_detailed(
            client=anonymous,
            body=CompleteLoginBody(challenge=challenge.challenge, recovery_code=enabled.recovery_codes[0]),
        ),
        200,
        LoginResult,
    )
    off = ok(
        "disableTotp",
        disable_totp.sync_detailed(
            client=as_token(completed.token),
            body=DisableTotpBody(password=new_password, recovery_code=enabled.recovery_codes[1]),
        ),
        200,
        UserDto,
    )
    check("two-factor sign-in is off", not off.two_factor, off)
    again = ok(
        "beginTotpEnrolment again", begin_totp_enrolment.sync_detailed(client=tf_session), 200, TotpEnrolment
    )
    ok(
        "confirmTotpEnrolment again",
        confirm_totp_enrolment.sync_detailed(
            client=tf_session, body=ConfirmTotpBody(code=totp_code(again.secret), password=new_password)
        ),
        200,
        TotpEnabled,
    )
    ok(
        "confirmPassword before the reset",
        confirm_password.sync_detailed(client=session, body=ConfirmPasswordBody(password=PASSWORD)),
        200,
        Confirmation,
    )
    reset = ok("resetUserTwoFactor", reset_user_two_factor.sync_detailed(member.id, client=session), 200, UserDto)
    check("the reset turned it off", not reset.two_factor, reset)

    # --- Users clean-up: deactivateUser, deleteUser.
    deactivated = ok("deactivateUser", deactivate_user.sync_detailed(member.id, client=session), 200, UserDto)
    check("the user is inactive", not deactivated.active, deactivated)
    ok("deleteUser", delete_user.sync_detailed(member.id, client=session), 204)
    refused("getUser after deleteUser", get_user.sync_detailed(member.id, client=session), 404, "not_found")

    # --- Audit: listAuditEvents.
    events = ok(
        "listAuditEvents",
        list_audit_events.sync_detailed(
            client=session, action="scope_set.create", target_id=set_id, offset=0, limit=1
        ),
        200,
        AuditPage,
    )
    check(
        "the audit page has the envelope",
        events.total == 1 and events.offset == 0 and events.limit == 1 and len(events.items) == 1,
        events,
    )

    # --- Operator: createTenant, listTenants, getTenant, updateTenant, disableTenant.
    refused("listTenants with a tenant session", list_tenants.sync_detailed(client=session), 403, "operator_only")
    slug = f"py-{suffix}"
    created = ok(
        "createTenant",
        create_tenant.sync_detailed(client=operator, body=CreateTenantBody(slug=slug, name="Python tenant")),
        201,
        CreatedTenant,
    )
    check(
        "the tenant is created with its first admin",
        created.tenant.slug == slug and created.tenant.enabled and created.admin_username and created.admin_password,
        created.tenant,
    )
    tenants = ok("listTenants", list_tenants.sync_detailed(client=operator, q=slug, limit=10), 200, TenantList)
    check("listTenants finds it", [t.id for t in tenants.items] == [created.tenant.id], tenants)
    got_tenant = ok("getTenant", get_tenant.sync_detailed(created.tenant.id, client=operator), 200, TenantDto)
    check("getTenant answers it", got_tenant.slug == slug, got_tenant)
    renamed_tenant = ok(
        "updateTenant",
        update_tenant.sync_detailed(
            created.tenant.id, client=operator, body=UpdateTenantBody(name="Python tenant (renamed)")
        ),
        200,
        TenantDto,
    )
    check("the tenant is renamed", renamed_tenant.name == "Python tenant (renamed)", renamed_tenant)
    disabled = ok("disableTenant", disable_tenant.sync_detailed(created.tenant.id, client=operator), 200, TenantDto)
    check("the tenant is disabled", not disabled.enabled, disabled)
    refused(
        "login to the disabled tenant",
        login.sync_detailed(
            client=anonymous,
            body=LoginBody(tenant=slug, username=created.admin_username, password=created.admin_password),
        ),
        401,
        "tenant_disabled",
    )


def coverage(operation_ids):
    missing_functions = [o for o in operation_ids if snake(o) not in generated]
    check(
        f"the generator made a function for each of the {len(operation_ids)} operations",
        not missing_functions,
        missing_functions,
    )
    not_called = [o for o in operation_ids if snake(o) not in called]
    check(
        f"every operationId of the spec was called ({len(operation_ids) - len(not_called)}/{len(operation_ids)})",
        not not_called,
        f"not called: {not_called}",
    )


if __name__ == "__main__":
    operation_ids = spec_operation_ids()
    record_calls()
    try:
        main()
    except Exception:
        failed += 1
        print("FAIL  " + traceback.format_exc())
    coverage(operation_ids)
    print(f"python client: {passed} passed, {failed} failed")
    sys.exit(0 if failed == 0 else 1)
