-- introspectToken (POST /api/v1/introspect) as a plugin sends it: a form body naming the
-- token to check, the plugin's own token in Authorization. Both tokens stay cached.
-- CALLER: the plugin's token (sigil.introspect); TOKEN: the token to introspect.
local caller = os.getenv("CALLER")
local token = os.getenv("TOKEN")

wrk.method = "POST"
wrk.body = "token=" .. token
wrk.headers["Authorization"] = "Bearer " .. caller
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
