-- Forward auth (GET /api/v1/authorize) rotating over many distinct tokens.
-- TOKENS_FILE: one token per line; THREADS: wrk's -t; MODE: "cold" or "warm".
-- Thread k takes every THREADS-th token starting at k.
--   warm: cycles over its tokens for the whole run.
--   cold: presents each of its tokens exactly once (every request a cache miss), then
--         stops; the rate is computed from the threads' own clocks (wrk's own figure
--         divides by the full -d) and printed as "cold: ...". Requests issued after a
--         thread ran out go to an unrouted path (404, never an answer of /authorize) and
--         are not counted; they show up in wrk's "Non-2xx" line.
local tokens_file = os.getenv("TOKENS_FILE")
local threads_n = tonumber(os.getenv("THREADS") or "2")
local mode = os.getenv("MODE") or "warm"
local done_dir = os.getenv("DONE_DIR")

local threads = {}
local next_id = 0

function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

local function now_ns()
   local p = io.popen("date +%s%N")
   local t = tonumber(p:read("*l"))
   p:close()
   return t
end

function init(args)
   reqs = {}
   local n = 0
   for line in io.lines(tokens_file) do
      if n % threads_n == id and #line > 0 then
         reqs[#reqs + 1] = wrk.format("GET", "/api/v1/authorize", {
            ["X-Original-Method"] = "GET",
            ["X-Original-URI"] = "/1.0/environment/control/rest/stopenv?envName=x",
            ["Authorization"] = "Bearer " .. line,
         })
      end
      n = n + 1
   end
   idx = 0
   answered = 0
   failed = 0
   t_start = 0
   t_end = 0
   filler = wrk.format("GET", "/bench-filler-not-routed")
end

function request()
   if t_start == 0 then
      t_start = now_ns()
      if mode == "cold" then
         -- wrk calls request() once more than it sends on one thread (when it checks
         -- the script), so the first call of every thread hands out a filler.
         return filler
      end
   end
   idx = idx + 1
   if idx > #reqs then
      if mode == "cold" then
         return filler
      end
      idx = 1
   end
   return reqs[idx]
end

if mode == "cold" then
   function response(status, headers, body)
      if status == 404 then
         return -- a filler
      end
      answered = answered + 1
      if status ~= 200 then
         failed = failed + 1
      end
      if answered == #reqs then
         t_end = now_ns()
         if done_dir then
            local f = io.open(done_dir .. "/done-" .. id, "w")
            if f then f:close() end
         end
         wrk.thread:stop()
      end
   end

   function done(summary, latency, requests)
      local first, last, total, bad = nil, 0, 0, 0
      for _, t in ipairs(threads) do
         local s, e = t:get("t_start"), t:get("t_end")
         if e == 0 then
            io.write(string.format("cold: a thread did not finish (%d of its tokens answered)\n", t:get("answered")))
            return
         end
         if first == nil or s < first then first = s end
         if e > last then last = e end
         total = total + t:get("answered")
         bad = bad + t:get("failed")
      end
      local secs = (last - first) / 1e9
      io.write(string.format("cold: %d verifications in %.3f s = %.2f verifications/s, %d not 200\n",
         total, secs, total / secs, bad))
   end
end
