-- GET of one user's metadata, with that user's token.
--
--   wrk ... -s benchmarks/get.lua URL -- TOKEN
--   wrk ... -s benchmarks/get.lua URL -- "Bearer <JWT>"   (a credential with its scheme)
--
-- No request() function: wrk formats the request once per thread, after init(), and sends
-- the same bytes every time, its fastest path.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

function init(args)
  assert(args[1], "usage: wrk ... -s get.lua URL -- TOKEN")
  wrk.method = "GET"
  if string.find(args[1], " ", 1, true) then
    wrk.headers["Authorization"] = args[1]
  else
    wrk.headers["Authorization"] = "Token " .. args[1]
  end
end
