-- POST /api/patients with a unique email per request, optionally paced, logging every 201.
--   PM_BENCH_TOKEN   bearer token
--   PM_BENCH_PATH    path to POST to
--   PM_BENCH_RUN     unique run label (emails must be unique across runs)
--   PM_BENCH_RATE    total requests/s over all threads; 0 = as fast as the server answers
--   PM_BENCH_THREADS wrk's -t (each thread paces its share of the rate)
--   PM_BENCH_LOG     file prefix: each thread appends "<patient id> <epoch ms>" per 201 to <prefix><n>
package.path = os.getenv("PM_BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local report = require("report")
local ffi = require("ffi")

ffi.cdef [[
  typedef long time_t;
  typedef struct timespec { time_t tv_sec; long tv_nsec; } timespec;
  int clock_gettime(int clk_id, struct timespec *tp);
]]
local ts = ffi.new("timespec[1]")
local CLOCK_REALTIME = 0

local function now_ms()
  ffi.C.clock_gettime(CLOCK_REALTIME, ts)
  return tonumber(ts[0].tv_sec) * 1000 + tonumber(ts[0].tv_nsec) / 1e6
end

local counter = 1
local threads = {}

function setup(thread)
  thread:set("thread_id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local run = os.getenv("PM_BENCH_RUN")
local rate = tonumber(os.getenv("PM_BENCH_RATE") or "0")
local n_threads = tonumber(os.getenv("PM_BENCH_THREADS") or "1")
local interval_ms = 0
if rate > 0 then interval_ms = 1000 * n_threads / rate end
local next_at = 0
local sent = 0
local log = nil

function init(args)
  log = io.open(os.getenv("PM_BENCH_LOG") .. thread_id, "a")
  wrk.method = "POST"
  wrk.path = os.getenv("PM_BENCH_PATH")
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("PM_BENCH_TOKEN")
  wrk.headers["Content-Type"] = "application/json"
end

-- Pacing: each thread hands out send slots `interval_ms` apart; a connection that is ready waits for
-- the next free slot. Slots never bunch up after a stall (a missed slot is dropped, not made up).
function delay()
  if interval_ms == 0 then return 0 end
  local now = now_ms()
  if next_at < now then next_at = now end
  local wait = next_at - now
  next_at = next_at + interval_ms
  return wait
end

function request()
  sent = sent + 1
  local body = string.format(
    '{"name":"Bench Patient %d","email":"bench-%s-%d-%d@example.com","address":"1 Load Street",' ..
    '"dateOfBirth":"1990-01-01","registeredDate":"2024-01-01"}', sent, run, thread_id, sent)
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  if status == 201 then
    local id = string.match(body, '"id"%s*:%s*"([0-9a-fA-F-]+)"')
    log:write(string.format("%s %.3f\n", id or "?", now_ms()))
    log:flush()
  end
end

done = report.done
