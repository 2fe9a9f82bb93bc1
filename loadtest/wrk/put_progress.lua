-- PUT /api/v1/users/me/enrollments/{seeded course}/progress (loadtest/put_progress.js),
-- short of 100 so that it never completes.
local lib = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "lib.lua")

lib.scenario {
  users = "learners",
  build = function(u, ctx)
    return "PUT", lib.API .. "/me/enrollments/" .. u.courses[ctx.rand(#u.courses)] .. "/progress",
        '{"progress":' .. ((ctx.rand(990) - 1) / 10) .. ',"timeSpentSeconds":30}'
  end,
}
