-- createToken (POST /api/v1/tokens) with a token holding tokens.create (no password
-- confirmation), rotating the owner over OWNERS_FILE (the per-user token limit).
-- TOKEN: the minter token; EXPIRES_AT: RFC 3339 expiry for the new tokens.
local token = os.getenv("TOKEN")
local owners_file = os.getenv("OWNERS_FILE")
local expires_at = os.getenv("EXPIRES_AT")

local next_id = 0
function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
end

function init(args)
   owners = {}
   for line in io.lines(owners_file) do
      if #line > 0 then owners[#owners + 1] = line end
   end
   n = 0
   headers = {
      ["Authorization"] = "Bearer " .. token,
      ["Content-Type"] = "application/json",
   }
end

function request()
   n = n + 1
   local body = string.format(
      '{"name":"load-%d-%d","scope_set":"platform.extended-access","expires_at":"%s","owner_id":"%s"}',
      id, n, expires_at, owners[(n % #owners) + 1])
   return wrk.format("POST", "/api/v1/tokens", headers, body)
end
