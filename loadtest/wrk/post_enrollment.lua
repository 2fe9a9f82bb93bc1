-- POST /api/v1/users/me/enrollments (loadtest/post_enrollment.js): a new course per
-- request (201), its id unique per run, thread and request.
local lib = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "lib.lua")

lib.scenario {
  users = "users",
  build = function(u, ctx)
    return "POST", lib.API .. "/me/enrollments", '{"courseId":"' .. ctx.courseID() .. '"}'
  end,
}
