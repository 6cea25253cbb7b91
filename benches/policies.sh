# shellcheck shell=bash
# The resilience policies the benchmarks turn on, all at once, with limits
# never hit: retries, a local rate limit, circuit breakers and outlier
# detection. Sourced by benches/load.sh and benches/callgrind.sh, so both
# measure the same thing. Each is a YAML fragment:
#   POLICY_RETRY       appended inside a route's `route: { ... }`
#   POLICY_RATE_LIMIT  a line of the route (indented for a route list item)
#   POLICY_CLUSTER     lines of a cluster
POLICY_RETRY=", retry: { retry_on: [5xx, reset, connect-failure], num_retries: 2 }"
POLICY_RATE_LIMIT="                rate_limit: { max_tokens: 1000000000, tokens_per_fill: 1000000000, fill_interval: 1s }"
POLICY_CLUSTER="    circuit_breakers: { default: { max_connections: 100000, max_pending_requests: 100000, max_requests: 100000 } }
    outlier_detection: { consecutive_5xx: 5, interval: 10s }"
