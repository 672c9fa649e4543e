"""Moderation pipeline for images uploaded to Amazon S3."""
