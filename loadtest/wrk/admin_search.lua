-- GET /api/v1/users?search=… as an admin (loadtest/admin_search.js).
local lib = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "lib.lua")

lib.scenario {
  users = "admins",
  build = function(u, ctx) return "GET", lib.API .. "?" .. lib.searchQuery(ctx.rand) end,
}
