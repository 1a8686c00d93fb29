"""Development tooling, outside the production packages: a whole cod network on one machine
(`stack.py`), the demo pipeline, the dev images and the fan-out example's helpers. Used by
`cod devstack`/`cod demo`, the tests and the benchmarks; no production module imports it at
module level."""
