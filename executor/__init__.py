"""The compute node: a Celery worker that fetches a job's inputs, runs its engine (Docker, WASM)
in a sandbox next to the data, publishes the result to IPFS and signs the outcome; heartbeats
advertise its capacity and holdings. It never imports `bridge`."""
