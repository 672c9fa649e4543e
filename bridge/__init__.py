"""The bridge: S3 events on SQS -> pending rows -> Celery chains."""
