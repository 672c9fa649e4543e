"""Moderator review: what awaits a moderator, and their approve/reject decisions on one object version.

The report store is the source of truth (the SQS review queue only notifies). ``decisions`` holds
the pure vocabulary; ``actions`` reads the store and changes the object's tags.
"""
