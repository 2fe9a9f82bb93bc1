-- The mix of loadtest/mix.js, weighted per request (the weights sum to 1000): mostly
-- reads, some progress updates and enrollments, a trickle of profile and preference
-- writes and of admin searches (as a random admin). A progress update for a user
-- without a seeded enrollment is a GET /me/enrollments instead.
local lib = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "lib.lua")

local requests = {
  { 600, function(u, ctx) return "GET", lib.API .. "/me" end },
  { 120, function(u, ctx) return "GET", lib.API .. "/me/preferences" end },
  { 80, function(u, ctx) return "GET", lib.API .. "/me/enrollments" end },
  { 100, function(u, ctx)
    if #u.courses == 0 then return "GET", lib.API .. "/me/enrollments" end
    return "PUT", lib.API .. "/me/enrollments/" .. u.courses[ctx.rand(#u.courses)] .. "/progress",
        '{"progress":' .. ((ctx.rand(990) - 1) / 10) .. ',"timeSpentSeconds":30}'
  end },
  { 40, function(u, ctx) return "POST", lib.API .. "/me/enrollments", '{"courseId":"' .. ctx.courseID() .. '"}' end },
  { 30, function(u, ctx) return "PUT", lib.API .. "/me", '{"bio":"bio ' .. ctx.rand(1000000000) .. '"}' end },
  { 25, function(u, ctx) return "PUT", lib.API .. "/me/preferences/ui", '{"preferences":[{"key":"theme","value":"dark"}]}' end },
  { 5, function(u, ctx)
    ctx.admin()
    return "GET", lib.API .. "?" .. lib.searchQuery(ctx.rand)
  end },
}

lib.scenario {
  users = "users",
  admins = true,
  build = function(u, ctx)
    local r = ctx.rand(1000)
    for _, w in ipairs(requests) do
      r = r - w[1]
      if r <= 0 then return w[2](u, ctx) end
    end
    return requests[1][2](u, ctx)
  end,
}
