-- PUT /api/v1/users/me/preferences/ui, two keys (loadtest/put_preference.js).
local lib = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "lib.lua")

local themes = { "light", "dark", "system" }

lib.scenario {
  users = "users",
  build = function(u, ctx)
    return "PUT", lib.API .. "/me/preferences/ui", '{"preferences":[{"key":"theme","value":"' ..
        themes[ctx.rand(#themes)] .. '"},{"key":"items_per_page","value":' .. (ctx.rand(5) * 10) .. '}]}'
  end,
}
