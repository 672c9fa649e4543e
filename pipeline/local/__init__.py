"""The one-machine stack for ``pipeline up --local`` and ``pipeline demo``: embedded Redis and a
moto server for S3 and SQS, plus the pipeline's own processes. Needs the ``local`` extra."""
