-- wrk script: GET /v1/recommend for a random one of USERS simulated users (u0 .. u{USERS-1}).
local users = tonumber(os.getenv("USERS") or "20000")

request = function()
  return wrk.format("GET", "/v1/recommend?user_id=u" .. math.random(0, users - 1) .. "&n=20")
end

done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format(
    "{\"requests\": %d, \"seconds\": %.1f, \"rate\": %.0f, \"p50_ms\": %.2f, \"p99_ms\": %.2f, \"max_ms\": %.2f, \"errors\": %d}\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000, errors))
end
