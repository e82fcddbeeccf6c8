"""Provider Batch APIs for the annotation pipeline (``--execution batch`` / ``batch-files``).

Why batches: OpenAI's Batch API answers the same chat completions at half the price within a
completion window, and ``vllm run-batch`` answers a file of them on a GPU box that has no server.
Either way the pipeline's requests go out as files of lines, each line addressed by the request's
cache key, and come back as files whose answers are stored in the response cache; the pipeline's
next pass then finds them there, exactly as a resumed online run would.

* :mod:`.batch_files` — the line format: writing part files, parsing output and error files;
* :mod:`.transport` — the OpenAI Batch API over the SDK, and :class:`~.transport.FileExchange`
  for files answered elsewhere;
* :mod:`.rounds` — :class:`~.rounds.BatchRounds`: one round (write, submit, poll, ingest), crash
  safe at every step;
* :mod:`.execution` — the round loop over the pipeline.

Nothing is imported here, so that the online path never loads the SDK's batch types.
"""
