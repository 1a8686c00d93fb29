"""The oracle daemon: reads `JobRequested` from the chain, places and dispatches each job to a
compute node over Celery, collects the signed outcome and settles it on-chain. One process, one
loop (`service.py`), one ledger. It never imports `executor`."""
