-- Shared plumbing of the wrk scenarios (loadtest/wrk/<scenario>.lua), the closed-loop
-- counterpart of the k6 scripts in loadtest/: wrk drives the service from LuaJIT with
-- a few microseconds of work per request, so on a small machine the figure is the
-- service's and not the generator's (k6 on two cores tops out near 12k req/s against a
-- server that does nothing; issue 16).
--
-- Every scenario script loads this file and calls lib.scenario{...}, which defines
-- wrk's setup/init/request/done hooks:
--   users = "users" | "learners" | "admins"   whose tokens the requests carry
--   fixed = function(u) -> method, path, body  one request per user, built once at
--                                              start (reads)
--   build = function(u, ctx) -> method, path, body
--                                              built per request (writes); ctx has
--                                              courseID(), rand(n) and, with
--                                              admins = true, admin() (a random
--                                              admin user, whose token the request
--                                              then carries)
--
-- Tokens come from the file cmd/seed writes (env TOKENS, default
-- loadtest/.data/tokens.json). Each thread walks the users in order from its own
-- offset (thread k of n starts at k/n of the list), one user per request, so the load
-- rotates over every seeded user and so over many actors. Course ids of POST enrollment
-- are unique per run, thread and request (random run nonce, thread number, counter).
--
-- done() prints one line `wrk-json {...}` with the totals and latency percentiles, for
-- bench/run.sh and bench/report. Non-2xx/3xx answers count as errors (wrk's "status").
local M = {}

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then error("cannot read token file " .. path .. ": " .. tostring(err)) end
  local s = f:read("*a")
  f:close()
  return s
end

-- load_users parses the token file (a JSON array of flat objects written by
-- cmd/seed) with Lua patterns: wrk's LuaJIT has no JSON library.
local function load_users(kind)
  local path = os.getenv("TOKENS") or "loadtest/.data/tokens.json"
  local out = {}
  for obj in read_file(path):gmatch("%b{}") do
    local token = obj:match('"token"%s*:%s*"([^"]+)"')
    local role = obj:match('"role"%s*:%s*"([^"]+)"')
    local courses = {}
    local list = obj:match('"courses"%s*:%s*%[(.-)%]')
    if list then
      for c in list:gmatch('"([^"]+)"') do courses[#courses + 1] = c end
    end
    local admin = role == "admin"
    if token and ((kind == "admins" and admin) or (kind == "users" and not admin) or
        (kind == "learners" and not admin and #courses > 0)) then
      out[#out + 1] = { token = token, courses = courses }
    end
  end
  if #out == 0 then error("no " .. kind .. " in " .. path .. ": run the seeder (cmd/seed)") end
  return out
end

-- nonce returns 32 random bits (from /dev/urandom, else the clock).
local function nonce()
  local f = io.open("/dev/urandom", "rb")
  if f then
    local b = f:read(4)
    f:close()
    if b and #b == 4 then
      return ((b:byte(1) * 256 + b:byte(2)) * 256 + b:byte(3)) * 256 + b:byte(4)
    end
  end
  return os.time() % 4294967296
end

-- request_string is one request of user u: the same bytes as wrk.format (request
-- line, the Host header wrk sets, Authorization, and Content-Type and
-- Content-Length with a body), but from the user's header lines joined once
-- (u.head, see with_heads) in one concatenation, without wrk.format's header
-- table: that table and its loop were a third of wrk's CPU per write request
-- (0.029 ms against 0.019 for the fixed requests of the reads, against the bare
-- baseline).
local function request_string(u, method, path, body)
  if body then
    return method .. " " .. path .. " HTTP/1.1\r\n" .. u.head .. "Content-Type: application/json\r\nContent-Length: " ..
        #body .. "\r\n\r\n" .. body
  end
  return method .. " " .. path .. " HTTP/1.1\r\n" .. u.head .. "\r\n"
end

-- with_heads sets u.head of each user: the Host and Authorization lines.
local function with_heads(users)
  local host = wrk.headers["Host"]
  for _, u in ipairs(users) do
    u.head = "Host: " .. host .. "\r\nAuthorization: Bearer " .. u.token .. "\r\n"
  end
  return users
end

-- Fragments of the names cmd/seed draws from (as loadtest/lib.js), so that searches
-- find something.
M.searchTerms = { "ali", "mar", "ana", "chen", "leo", "sam", "nora", "omar", "yuki", "zoe", "priya", "hugo",
  "smith", "garcia", "nguyen", "patel", "tanaka", "rossi", "silva", "weber", "kim", "lopez",
  "example.com", "mario_", "julia." }
M.sorts = { "createdAt", "lastName", "firstName", "email", "updatedAt" }

-- searchQuery is a random admin search, as loadtest/lib.js's searchQuery.
function M.searchQuery(rand)
  local q = "search=" .. M.searchTerms[rand(#M.searchTerms)] .. "&page=" .. rand(3) ..
      "&limit=20&sortBy=" .. M.sorts[rand(#M.sorts)] .. "&sortOrder=" .. (rand(2) == 1 and "asc" or "desc")
  if rand(10) <= 3 then q = q .. "&role=student" end
  return q
end

M.API = "/api/v1/users"

function M.scenario(spec)
  local threads = {}
  local count = 0

  -- setup runs in wrk's main Lua state once per thread, before it starts.
  function setup(thread)
    count = count + 1
    thread:set("tid", count)
    threads[count] = thread
  end

  local users, pos, fixed, ctx
  -- init runs in each thread's own Lua state.
  function init(args)
    local n = tonumber(os.getenv("WRK_THREADS") or "") or 0
    users = with_heads(load_users(spec.users or "users"))
    math.randomseed(nonce())
    local run, tid, seq = nonce(), tid or 1, 0
    pos = math.floor(((tid - 1) % math.max(n, 1)) * #users / math.max(n, 1))
    if n == 0 then pos = ((tid - 1) * 7919) % #users end
    ctx = {
      rand = function(k) return math.random(k) end,
      -- a UUID (version 4 layout) unique per run, thread and request
      courseID = function()
        seq = seq + 1
        return string.format("%08x-%04x-4%03x-8%03x-%012x", run, tid % 65536,
          math.floor(seq / 16777216) % 4096, math.floor(seq / 68719476736) % 4096, seq % 16777216)
      end,
    }
    if spec.admins then
      local admins = with_heads(load_users("admins"))
      ctx.admin = function()
        ctx.as = admins[math.random(#admins)]
        return ctx.as
      end
    end
    if spec.fixed then
      fixed = {}
      for i, u in ipairs(users) do fixed[i] = request_string(u, spec.fixed(u)) end
    end
  end

  function request()
    pos = pos % #users + 1
    if fixed then return fixed[pos] end
    local u = users[pos]
    ctx.as = u
    local method, path, body = spec.build(u, ctx)
    return request_string(ctx.as, method, path, body)
  end

  -- done runs in the main state after the run: one machine-readable line.
  function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
      'wrk-json {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,' ..
      '"write_errors":%d,"status_errors":%d,"timeouts":%d,"lat_mean_us":%.1f,"lat_max_us":%d,' ..
      '"p50_us":%d,"p90_us":%d,"p95_us":%d,"p99_us":%d}\n',
      summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
      latency.mean, latency.max, latency:percentile(50), latency:percentile(90), latency:percentile(95),
      latency:percentile(99)))
  end
end

return M
