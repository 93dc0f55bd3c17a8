-- One request shape per wrk run, chosen by environment variables (set by bench/run.py):
--   BENCH_METHOD  GET or POST
--   BENCH_PATH    the path; "{id}" in it is replaced by a random id from BENCH_IDS per request
--   BENCH_IDS     a file of ids, one a line
--   BENCH_BODY    a JSON body (optional)
--   BENCH_TOKEN   the API token (Authorization: Bearer ...)
--   BENCH_MAX     at most this many requests per thread (the run is bounded in count and time)
-- done() prints one line `BENCH_JSON {...}` with counts, errors and latency percentiles (µs).

local method = os.getenv("BENCH_METHOD") or "GET"
local path = os.getenv("BENCH_PATH") or "/"
local body = os.getenv("BENCH_BODY")
local token = os.getenv("BENCH_TOKEN")
local ids_file = os.getenv("BENCH_IDS")
local max_requests = tonumber(os.getenv("BENCH_MAX") or "5000000")

local headers = {}
if token then headers["Authorization"] = "Bearer " .. token end
if body and body ~= "" then headers["Content-Type"] = "application/json" else body = nil end

local at = path:find("{id}", 1, true)
local prefix, suffix = path, ""
if at then prefix, suffix = path:sub(1, at - 1), path:sub(at + 4) end

local ids, n_ids, fixed, sent = {}, 0, nil, 0

local counter = 0
function setup(thread)
   counter = counter + 1
   thread:set("seed", counter * 7919 + os.time())
end

function init(args)
   math.randomseed(seed or os.time())
   if at then
      for line in io.lines(ids_file) do
         n_ids = n_ids + 1
         ids[n_ids] = line
      end
   else
      fixed = wrk.format(method, path, headers, body)
   end
end

function request()
   sent = sent + 1
   if sent > max_requests then wrk.thread:stop() end
   if fixed then return fixed end
   return wrk.format(method, prefix .. ids[math.random(n_ids)] .. suffix, headers, body)
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
      '"max_us":%d,"mean_us":%.1f,"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d}\n',
      summary.requests, summary.duration, summary.bytes,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
      e.connect, e.read, e.write, e.status, e.timeout))
end
