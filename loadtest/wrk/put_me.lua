-- PUT /api/v1/users/me {"bio": …} (loadtest/put_me.js): a profile write, committed
-- with its user.updated outbox row before the 200.
local lib = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "lib.lua")

lib.scenario {
  users = "users",
  build = function(u, ctx)
    return "PUT", lib.API .. "/me", '{"bio":"Load test bio ' .. ctx.rand(1000000000) .. '"}'
  end,
}
