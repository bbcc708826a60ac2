-- wrk script of the presence benchmark (driven by bench/run.py).
--
--   wrk -t T -c C -d SECONDS+GRACE --timeout LONG -s bench/load.lua URL -- MODE FILE SECONDS OFFSET AUTH THREADS
--
-- MODE "hook": FILE holds one webhook body a line; each is POSTed to /hook in
--      file order, round-robin; thread 0 starts after line OFFSET, thread i
--      i/THREADS of the file further on.
-- MODE "get":  FILE holds one path a line; each request GETs one picked at random.
-- AUTH is the whole Authorization header value.
--
-- Every request is pre-built in init(), so request() only indexes a table (and
-- reads the monotonic clock, through LuaJIT's FFI).
--
-- Exact accounting: a thread sends for SECONDS after its first answer, then each
-- connection "parks": request() returns an empty string, wrk writes nothing and
-- that connection waits quietly. wrk runs GRACE seconds longer, so every request
-- sent gets its answer before wrk stops; no event is committed by the server
-- without its 200 being counted here. done() prints one line, "BENCH-RESULT {json}";
-- first_s and last_s (first and last answer) are CLOCK_MONOTONIC seconds, the
-- clock of Python's time.monotonic(), so run.py can tell what the CPUs did then.

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]])
local CLOCK_MONOTONIC = 1
local timespec = ffi.new("bench_timespec")

local function now()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
  return tonumber(timespec.tv_sec) + tonumber(timespec.tv_nsec) * 1e-9
end

-- Main state: one entry per thread, read back in done().
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

-- Thread state.
local mode, seconds, requests, count, pos
local deadline = nil

function init(args)
  mode = args[1]
  local file = args[2]
  seconds = tonumber(args[3])
  local offset = tonumber(args[4])
  local headers = { ["Authorization"] = args[5] }
  local nthreads = tonumber(args[6])
  requests = {}
  if mode == "hook" then
    headers["Content-Type"] = "application/json"
    for line in io.lines(file) do
      if #line > 0 then
        requests[#requests + 1] = wrk.format("POST", "/hook", headers, line)
      end
    end
  else
    for line in io.lines(file) do
      if #line > 0 then
        requests[#requests + 1] = wrk.format("GET", line, headers)
      end
    end
  end
  count = #requests
  pos = (offset + id * math.floor(count / nthreads)) % count
  math.randomseed(7919 + id)
  -- Counters read by done(); globals so that thread:get() sees them.
  sent, parked, responses, ok, non2xx = 0, 0, 0, 0, 0
  first, last = 0, 0
end

function request()
  if deadline ~= nil and now() >= deadline then
    parked = parked + 1
    return ""
  end
  sent = sent + 1
  if mode == "hook" then
    pos = pos + 1
    if pos > count then
      pos = 1
    end
    next_offset = pos
    return requests[pos]
  end
  return requests[math.random(count)]
end

function response(status, _headers, _body)
  local t = now()
  if deadline == nil then
    first = t
    deadline = t + seconds
  end
  last = t
  responses = responses + 1
  if status >= 200 and status < 300 then
    ok = ok + 1
  else
    non2xx = non2xx + 1
  end
end

function done(summary, latency, _requests)
  local totals = { sent = 0, parked = 0, responses = 0, ok = 0, non2xx = 0 }
  local first_any, last_any = nil, 0
  for _, thread in ipairs(threads) do
    for name, _ in pairs(totals) do
      totals[name] = totals[name] + (thread:get(name) or 0)
    end
    local f, l = thread:get("first") or 0, thread:get("last") or 0
    if f > 0 and (first_any == nil or f < first_any) then
      first_any = f
    end
    if l > last_any then
      last_any = l
    end
  end
  -- wrk calls request() once on thread 1's script to check it; that request is never sent.
  totals.sent = totals.sent - 1
  local e = summary.errors
  io.write(string.format(
    'BENCH-RESULT {"requests":%d,"duration_us":%d,"sent":%d,"parked":%d,"responses":%d,"ok":%d,"non2xx":%d,'
      .. '"window_s":%.6f,"first_s":%.6f,"last_s":%.6f,"next_offset":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, totals.sent, totals.parked, totals.responses, totals.ok, totals.non2xx,
    (first_any ~= nil) and (last_any - first_any) or 0, first_any or 0, last_any, threads[1]:get("next_offset") or 0,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50.0), latency:percentile(90.0), latency:percentile(99.0), latency.max, latency.mean
  ))
end
