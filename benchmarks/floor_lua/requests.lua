-- wrk script for benchmarks/floor.py: one row of its table per run, each request randomized.
--
--   wrk -t2 -c8 -d3s -s requests.lua http://127.0.0.1:PORT -- KIND DATAFILE PREFIX TOKEN
--
-- KIND is a row name (see `builders` below). DATAFILE, written by floor.py for the server under
-- test, holds tab-separated lines:
--   u <id> <userName> <externalId> <givenName> <familyName>   one per seeded user
--   b <id>                                                   the big group
--   s <displayName>                                          one per small group
-- PREFIX makes the names of created users and groups unique to this run (with the thread's
-- number and a counter). Every response's status is checked: done() prints one "BENCH" line
-- with the counts and latency percentiles, a "BENCHSTATUS" line per unexpected status, and a
-- "BENCHFIRST" line with the first unexpected response of each thread.

local USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
local GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"
local PATCH_URN = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
local BASE = "/scim/v2"
local PAGE = 100

-- main state: the threads, to collect their counters in done()
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

-- thread state
local users, lookups, small_groups = {}, {}, {}
local big_group
local kind, prefix
local counter = 0
bad = 0
bad_statuses = {}
first_bad = ""

local function urlencode(s)
  return (s:gsub("[^%w%-%._~]", function(c)
    return string.format("%%%02X", string.byte(c))
  end))
end

local function split_tabs(line)
  local fields = {}
  for field in (line .. "\t"):gmatch("([^\t]*)\t") do
    table.insert(fields, field)
  end
  return fields
end

local function pick(list)
  return list[math.random(#list)]
end

local function user_body(user_name, external_id, given, family)
  return string.format(
    '{"schemas":["%s"],"userName":"%s","externalId":"%s",'
      .. '"name":{"givenName":"%s","familyName":"%s","formatted":"%s %s"},'
      .. '"displayName":"%s %s",'
      .. '"emails":[{"value":"%s","type":"work","primary":true}],"active":true}',
    USER_URN, user_name, external_id, given, family, given, family, given, family, user_name)
end

local function patch_body(path, json_value)
  return string.format(
    '{"schemas":["%s"],"Operations":[{"op":"replace","path":"%s","value":%s}]}',
    PATCH_URN, path, json_value)
end

local function next_name()
  counter = counter + 1
  return string.format("%s.%d.%d", prefix, tid, counter)
end

local builders = {
  lookup = function()
    return wrk.format("GET", pick(lookups))
  end,
  page = function()
    local start = math.random(math.max(1, #users - PAGE + 1))
    return wrk.format("GET", string.format("%s/Users?startIndex=%d&count=%d", BASE, start, PAGE))
  end,
  post_user = function()
    local name = next_name()
    return wrk.format("POST", BASE .. "/Users", nil,
      user_body(name .. "@new.example.com", "new-" .. name, "New", "Person"))
  end,
  put_user = function()
    local u = pick(users)
    local given = "Put" .. math.random(1000000)
    return wrk.format("PUT", BASE .. "/Users/" .. u[1], nil, user_body(u[2], u[3], given, u[5]))
  end,
  patch_given = function()
    local u = pick(users)
    return wrk.format("PATCH", BASE .. "/Users/" .. u[1], nil,
      patch_body("name.givenName", '"Patched' .. math.random(1000000) .. '"'))
  end,
  patch_active = function()
    local u = pick(users)
    return wrk.format("PATCH", BASE .. "/Users/" .. u[1], nil, patch_body("active", "false"))
  end,
  post_group = function()
    return wrk.format("POST", BASE .. "/Groups", nil,
      string.format('{"schemas":["%s"],"displayName":"New group %s"}', GROUP_URN, next_name()))
  end,
  get_big_group = function()
    return wrk.format("GET", BASE .. "/Groups/" .. big_group .. "?excludedAttributes=members")
  end,
  group_lookup = function()
    return wrk.format("GET", pick(small_groups))
  end,
}

local build

function init(args)
  kind, prefix = args[1], args[3]
  build = builders[kind]
  if build == nil then
    error("unknown request kind " .. tostring(kind))
  end
  wrk.headers["Authorization"] = "Bearer " .. args[4]
  wrk.headers["Content-Type"] = "application/scim+json"
  wrk.headers["Accept"] = "application/scim+json"
  local file = assert(io.open(args[2], "r"))
  for line in file:lines() do
    local f = split_tabs(line)
    if f[1] == "u" then
      table.insert(users, { f[2], f[3], f[4], f[5], f[6] })
      table.insert(lookups,
        BASE .. "/Users?filter=" .. urlencode('userName eq "' .. f[3] .. '"'))
    elseif f[1] == "b" then
      big_group = f[2]
    elseif f[1] == "s" then
      table.insert(small_groups,
        BASE .. "/Groups?filter=" .. urlencode('displayName eq "' .. f[2] .. '"'))
    end
  end
  file:close()
  math.randomseed(os.time() + 7919 * tid)
end

function request()
  return build()
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    bad = bad + 1
    bad_statuses[status] = (bad_statuses[status] or 0) + 1
    if first_bad == "" then
      first_bad = status .. " " .. (body or ""):sub(1, 300):gsub("%s+", " ")
    end
  end
end

function done(summary, latency, requests)
  local bad_total = 0
  for _, thread in ipairs(threads) do
    bad_total = bad_total + thread:get("bad")
  end
  local errors = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d bad=%d connect=%d read=%d write=%d timeout=%d "
      .. "p50_us=%d p95_us=%d p99_us=%d max_us=%d\n",
    summary.requests, summary.duration, bad_total, errors.connect, errors.read, errors.write,
    errors.timeout, latency:percentile(50), latency:percentile(95), latency:percentile(99),
    latency.max))
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("bad_statuses")) do
      io.write(string.format("BENCHSTATUS %d %d\n", status, count))
    end
    local first = thread:get("first_bad")
    if first ~= "" then
      io.write("BENCHFIRST " .. first .. "\n")
    end
  end
end
