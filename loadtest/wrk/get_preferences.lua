-- GET /api/v1/users/me/preferences (loadtest/get_preferences.js).
local lib = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "lib.lua")

lib.scenario {
  users = "users",
  fixed = function(u) return "GET", lib.API .. "/me/preferences" end,
}
