-- PATCHes setting one key each, rotating over users and over NKEYS key names with small integer
-- values, so the documents keep their size.
--
--   wrk -tTHREADS ... -s benchmarks/patch.lua URL -- THREADS NKEYS TOKEN [TOKEN...]
--
-- THREADS must equal wrk's -t.  The tokens are split between wrk's threads (token i goes to
-- thread i % THREADS).  Within a thread the user changes with every request, so with at least
-- as many tokens as connections the requests in flight at any moment (the last
-- `connections / threads` issued by each thread) are all for different users: no two
-- concurrent writes to the same row.  With one token, every request writes the same row.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

-- setup() runs in wrk's main Lua state, once per thread, before that thread's init().
local next_tid = 0
function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
end

local mine = {}
local nkeys = 1
local counter = 0

function init(args)
  local threads = tonumber(args[1])
  nkeys = tonumber(args[2])
  assert(threads and nkeys and args[3], "usage: wrk ... -s patch.lua URL -- THREADS NKEYS TOKEN...")
  local tokens = {}
  for i = 3, #args do
    table.insert(tokens, "Token " .. args[i])
  end
  for i, token in ipairs(tokens) do
    if (i - 1) % threads == tid then
      table.insert(mine, token)
    end
  end
  if #mine == 0 then
    mine = tokens
  end
  wrk.method = "PATCH"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local n = #mine
  local user = counter % n
  local key = math.floor(counter / n) % nkeys
  wrk.headers["Authorization"] = mine[user + 1]
  local body = '{"metadata":{"k' .. key .. '":' .. (counter % 100) .. '}}'
  return wrk.format(nil, nil, nil, body)
end
