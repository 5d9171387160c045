"""Batch API mode (`generate --api batch`): the same runs at the Batch API's price.

    config.py   BatchConfig: the batch-pool limits and the polling (flags in engine.config)
    lines.py    jobs -> input lines; output and error lines -> outcomes (pure)
    runner.py   the loop: fill batches from ready jobs, poll, settle, in waves
    status.py   open batches and the batch cost, for `status`

The HTTP calls (files, batches) go through workers.batch_api (the openai SDK); the online hot
path (workers.dispatch, workers.client) is not used in this mode.
"""
