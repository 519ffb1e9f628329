-- wrk script of bench/partner-auth.ts: POST one fixed ~1 KB body (the one bench/wechat-1k.lua
-- sends, written to a file by the bench) to a route that is open, keyed or webhook-signed.
--   wrk ... -s bench/partner-auth.lua URL open    BODY_FILE
--   wrk ... -s bench/partner-auth.lua URL apikey  BODY_FILE HEADER KEY
--   wrk ... -s bench/partner-auth.lua URL webhook BODY_FILE SIGNED_PREFIX
-- open and apikey send a unique Idempotency-Key per request, as wechat-1k.lua does. webhook sends
-- the pre-signed webhook-id, webhook-timestamp and webhook-signature of line i of
-- SIGNED_PREFIX.<thread> for the thread's request i (a line: "id timestamp v1,base64"): signing
-- happens before wrk starts, so the load generator spends no CPU on HMACs. Past its last line a
-- thread starts over, and the bridge answers those replays 401 (the bench sizes the files so that
-- this does not happen, and reports any non-2xx).
wrk.method = "POST"
wrk.headers["Content-Type"] = "text/xml; charset=utf-8"
local thread_id = 0
function setup(thread)
  thread:set("tid", thread_id)
  thread_id = thread_id + 1
end

local mode, body
local signed = {}
local counter = 0

local function slurp(name)
  local f = assert(io.open(name, "rb"))
  local text = f:read("*a")
  f:close()
  return text
end

function init(args)
  mode = args[1]
  body = slurp(args[2])
  if mode == "apikey" then
    wrk.headers[args[3]] = args[4]
  elseif mode == "webhook" then
    for line in io.lines(args[3] .. "." .. (tid or 0)) do
      local id, ts, sig = line:match("^(%S+) (%S+) (%S+)$")
      signed[#signed + 1] = { id, ts, sig }
    end
    assert(#signed > 0, "no pre-signed requests in " .. args[3] .. "." .. (tid or 0))
  elseif mode ~= "open" then
    error("mode must be open, apikey or webhook, not " .. tostring(mode))
  end
end

function request()
  counter = counter + 1
  if mode == "webhook" then
    local s = signed[(counter - 1) % #signed + 1]
    wrk.headers["webhook-id"] = s[1]
    wrk.headers["webhook-timestamp"] = s[2]
    wrk.headers["webhook-signature"] = s[3]
  else
    wrk.headers["Idempotency-Key"] = string.format("wrk-%d-%d-%d", tid or 0, os.time(), counter)
  end
  return wrk.format(nil, nil, nil, body)
end
