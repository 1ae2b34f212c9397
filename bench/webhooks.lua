-- Signed webhooks for wrk (bench/ingest/wrk.py writes the requests, then reads what this prints).
-- Each thread sends its own file of pre-built, pre-signed HTTP requests, in order, each once:
-- building or signing a request here would put that cost on the load generator. A thread that
-- runs out sends a GET to a path no server has; its 404 is not counted as accepted.
-- Usage: wrk -t T -c C -d D -s bench/webhooks.lua http://host:port -- <file prefix>

local threads = {}
local next_id = 0

function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

function init(args)
   local file = assert(io.open(args[1] .. "-" .. id .. ".http", "rb"))
   local data = file:read("*a")
   file:close()
   requests = {}
   for one in data:gmatch("([^%z]+)%z") do
      requests[#requests + 1] = one
   end
   sent = 0
   spare = wrk.format("GET", "/bench-out-of-requests")
end

function request()
   if sent >= #requests then
      return spare
   end
   sent = sent + 1
   return requests[sent]
end

function done(summary, latency, _)
   for _, thread in ipairs(threads) do
      io.write(string.format("BENCH thread %d sent %d\n", thread:get("id"), thread:get("sent")))
   end
   local e = summary.errors
   io.write(string.format(
      "BENCH summary %d %d %d %d %d %d %d %d %d %d\n",
      summary.duration, summary.requests, e.status, e.connect, e.read, e.write, e.timeout,
      latency:percentile(50), latency:percentile(99), latency.max
   ))
end
