-- wrk script of bench/run.py: POSTs the JSON bodies of $BENCH_BODIES (one per line) in turn,
-- with the key from $BENCH_KEY, and writes the run's figures as JSON to $BENCH_OUT.
local bodies = {}
local key = os.getenv("BENCH_KEY")
local path = os.getenv("BENCH_PATH")
for line in io.lines(os.getenv("BENCH_BODIES")) do
  bodies[#bodies + 1] = line
end
local headers = {["Content-Type"] = "application/json", ["X-API-Key"] = key}
local counter = 0

function setup(thread)
  thread:set("offset", counter)  -- threads start at different bodies
  counter = counter + 7
end

function init(args)
  i = offset
end

function request()
  i = i % #bodies + 1
  return wrk.format("POST", path, headers, bodies[i])
end

function done(summary, latency, requests)
  local e = summary.errors
  local f = io.open(os.getenv("BENCH_OUT"), "w")
  f:write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"socket_errors": %d, "non_2xx": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max, e.connect + e.read + e.write + e.timeout, e.status))
  f:close()
end
