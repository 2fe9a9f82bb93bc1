-- GET /api/v1/users/me (loadtest/get_me.js), from the user's actor.
local lib = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "lib.lua")

lib.scenario {
  users = "users",
  fixed = function(u) return "GET", lib.API .. "/me" end,
}
