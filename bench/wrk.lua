-- wrk script of bench/run.py. Environment:
--   BENCH_KEY       the API key
--   BENCH_SINGLE    file of single-transaction bodies (one JSON per line), POSTed to BENCH_PATH
--   BENCH_PATH      route of the single bodies (default /fraud_score)
--   BENCH_BATCH     file of batch bodies, POSTed to /fraud_score/batch
--   BENCH_BATCH_PERMILLE  how many requests in 1,000 are batches (0 = singles only; 1000 = batches)
--   BENCH_OUT       where the run's figures go, as JSON
--   BENCH_DELAY_MS  a connection's pause after an answer before its next request (default 0)
-- Latency is measured per request kind and status: each request carries its send time (LuaJIT
-- clock) in X-Request-ID, which the service echoes; the answer's arrival minus that time is its
-- latency, counted in a histogram of 2%-wide buckets (flat tables: wrk's thread:get() crashes on
-- nested ones). wrk's own histogram (all requests together) is reported too.
local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } timespec;
  int clock_gettime(int clk_id, timespec *tp);
]]
local ts = ffi.new("timespec")
local function now_us()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000000 + math.floor(tonumber(ts.tv_nsec) / 1000)
end

local function lines(path)
  local out = {}
  if path and path ~= "" then
    for line in io.lines(path) do out[#out + 1] = line end
  end
  return out
end

local key = os.getenv("BENCH_KEY")
local single_path = os.getenv("BENCH_PATH") or "/fraud_score"
local singles = lines(os.getenv("BENCH_SINGLE"))
local batches = lines(os.getenv("BENCH_BATCH"))
local permille = tonumber(os.getenv("BENCH_BATCH_PERMILLE") or "0")
local threads = {}
local counter = 0
local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
if delay_ms > 0 then
  -- wrk pauses before it calls request(), so the send time below excludes the pause
  function delay() return delay_ms end
end

function setup(thread)
  thread:set("offset", counter)
  counter = counter + 7
  table.insert(threads, thread)
end

function init(args)
  i = offset
  n = 0
  hist = {} -- "kind status|bucket" -> count
end

local LOG_STEP = math.log(1.02)

function request()
  i = i + 1
  n = n + 1
  local headers = {["Content-Type"] = "application/json", ["X-API-Key"] = key,
                   ["X-Request-ID"] = tostring(now_us())}
  if permille > 0 and (n * 7919) % 1000 < permille then
    headers["X-Request-ID"] = "b" .. headers["X-Request-ID"]
    return wrk.format("POST", "/fraud_score/batch", headers, batches[i % #batches + 1])
  end
  return wrk.format("POST", single_path, headers, singles[i % #singles + 1])
end

function response(status, headers, body)
  local id = headers["x-request-id"] or headers["X-Request-ID"]
  if not id then return end
  local kind = "single"
  if string.sub(id, 1, 1) == "b" then
    kind = "batch"
    id = string.sub(id, 2)
  end
  local sent = tonumber(id)
  if not sent then return end
  local bucket = math.floor(math.log(math.max(1, now_us() - sent)) / LOG_STEP)
  local k = kind .. " " .. status .. "|" .. bucket
  hist[k] = (hist[k] or 0) + 1
end

function done(summary, latency, requests)
  local merged = {} -- "kind status" -> {bucket -> count}
  for _, t in ipairs(threads) do
    for k, count in pairs(t:get("hist")) do
      local name, bucket = string.match(k, "^(.*)|(%d+)$")
      merged[name] = merged[name] or {}
      merged[name][tonumber(bucket)] = (merged[name][tonumber(bucket)] or 0) + count
    end
  end
  local parts = {}
  for name, buckets in pairs(merged) do
    local keys, total = {}, 0
    for b, c in pairs(buckets) do keys[#keys + 1] = b; total = total + c end
    table.sort(keys)
    local function pct(p) -- upper bound of the bucket holding the p-th percentile
      local want, seen = total * p / 100, 0
      for _, b in ipairs(keys) do
        seen = seen + buckets[b]
        if seen >= want then return math.floor(1.02 ^ (b + 1)) end
      end
      return 0
    end
    parts[#parts + 1] = string.format('"%s": {"count": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}',
      name, total, pct(50), pct(99), math.floor(1.02 ^ (keys[#keys] + 1)))
  end
  local e = summary.errors
  local f = io.open(os.getenv("BENCH_OUT"), "w")
  f:write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"socket_errors": %d, "timeouts": %d, "non_2xx": %d, "by_kind": {%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max, e.connect + e.read + e.write + e.timeout, e.timeout, e.status,
    table.concat(parts, ", ")))
  f:close()
end
